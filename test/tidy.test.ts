// Tidy checks over the source tree: imports go one way (cli -> {analysis, report, sim, topology} ->
// kernel -> hw), and src/ never uses Math.random.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', 'src');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Which top-level layers each layer may import. */
const ALLOWED: Record<string, readonly string[]> = {
  hw: ['hw'],
  kernel: ['kernel', 'hw', 'sim'],
  sim: ['sim', 'hw'],
  topology: ['topology', 'kernel', 'hw'],
  analysis: ['analysis', 'kernel', 'hw', 'topology', 'sim'],
  report: ['report', 'hw', 'analysis', 'kernel', 'sim'],
  cli: ['cli', 'analysis', 'report', 'sim', 'topology', 'kernel', 'hw'],
};

const layerOf = (file: string): string => relative(SRC, file).split('/')[0]!;

describe('source tree', () => {
  const files = walk(SRC).filter((f) => !f.endsWith('.test.ts'));
  it('has source files', () => expect(files.length).toBeGreaterThan(5));
  it('imports only downwards', () => {
    const bad: string[] = [];
    for (const f of files) {
      const layer = layerOf(f);
      const allowed = ALLOWED[layer];
      if (!allowed) {
        bad.push(`${relative(SRC, f)}: unknown layer ${layer}`);
        continue;
      }
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/from\s+'(\.[^']+)'/g)) {
        const target = relative(SRC, join(f, '..', m[1]!));
        const tl = target.split('/')[0]!;
        if (!allowed.includes(tl)) bad.push(`${relative(SRC, f)} imports ${target}`);
      }
    }
    expect(bad).toEqual([]);
  });
  it('never uses Math.random', () => {
    const bad = files.filter((f) => /Math\.random\s*\(/.test(readFileSync(f, 'utf8')));
    expect(bad).toEqual([]);
  });
});
