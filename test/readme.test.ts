// The README's worked examples stay true: every "$ npx tsx src/cli/bin.ts ..." block is run in process
// and its output must equal the block.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/run-cli.js';

const README = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
const examples = [...README.matchAll(/```\n\$ npx tsx src\/cli\/bin\.ts ([^\n]+)\n([\s\S]*?)```/g)].map(
  (m) => ({ args: m[1]!, expected: m[2]! }),
);

async function capture(args: string[]): Promise<string> {
  return (await runCli(...args, '--no-color')).out;
}

describe('README examples', () => {
  it('has examples', () => expect(examples.length).toBeGreaterThanOrEqual(2));
  for (const ex of examples) {
    it(ex.args, async () => {
      // Paths in the README are relative to the repository root.
      const args = ex.args
        .split(/\s+/)
        .map((a) => (a.startsWith('../shared/') ? join(import.meta.dirname, '..', a) : a));
      const out = await capture(args);
      expect(out.replaceAll(join(import.meta.dirname, '..', '../shared/'), '../shared/')).toBe(ex.expected);
    });
  }
});
