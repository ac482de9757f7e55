import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../test/helpers/run-cli.js';
import { SCENARIO_DIR } from '../analysis/run/scenario-file.js';
import { EXIT_RUN_FAILED, reproduceCommand } from './cmd-run.js';
import { EXIT_BAD_INPUT, EXIT_OK } from './exit.js';

const run = runCli;

afterEach(() => vi.restoreAllMocks());

/** A copy of a built-in scenario in a temp dir (machine path made absolute), edited. */
function scenarioCopy(name: string, edit: (t: string) => string): string {
  const dir = mkdtempSync(join(tmpdir(), 'dmasim-run-'));
  const text = readFileSync(join(SCENARIO_DIR, `${name}.yaml`), 'utf8').replace(
    /^machine: (.*)$/m,
    (_, m: string) => `machine: ${join(SCENARIO_DIR, m)}`,
  );
  const p = join(dir, `${name}.yaml`);
  writeFileSync(p, edit(text));
  return p;
}

describe('dmasim run', () => {
  it('lists the built-in scenarios without an argument', async () => {
    const r = await run('run');
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/^p2p-switch +nvme0 -> CMB of nvme1/m);
  });

  it('prints the seed and options first, then the run; the kernel errno is a successful run', async () => {
    const r = await run('run', 'p2p-blocked', '--no-color');
    expect(r.code).toBe(EXIT_OK);
    expect(r.out.split('\n')[0]).toBe(
      'dmasim run p2p-blocked  seed 1, kernel 6.1, iommu off, machine nvme-two-bridges',
    );
    expect(r.out).toContain('read-into-cmb: EREMOTEIO (-121) x1');
    expect(r.err).toBe('');
  });

  it('--json gives one document with the promised fields', async () => {
    const r = await run('run', 'iommu-fault', '--json');
    expect(r.code).toBe(EXIT_OK);
    const j = JSON.parse(r.out);
    expect(Object.keys(j)).toEqual(
      expect.arrayContaining([
        'verified',
        'bytesMoved',
        'rootComplexBytes',
        'hostMemoryBytes',
        'iommuFaults',
        'errors',
        'transfers',
        'links',
      ]),
    );
    expect(j.errors).toEqual([
      { transfer: 'read-into-ram', errno: 'EIO', errnoValue: -5, detail: expect.any(String), count: 1 },
    ]);
    expect(j.iommuFaults[0]).toMatchObject({
      requester: '0000:03:00.0',
      reason: 'not-present',
      iova: expect.stringMatching(/^0x/),
    });
    expect(j.verified).toBe(true);
  });

  it('a run that misses its expectations exits 1 and prints the command that reproduces it', async () => {
    const r = await run('run', 'p2p-blocked', '--kernel', 'newest', '--seed', '5', '--no-color');
    expect(r.code).toBe(EXIT_RUN_FAILED);
    expect(r.out).toContain('FAIL errors EREMOTEIO: got EINVAL');
    expect(r.err).toContain('reproduce with:\n  dmasim run p2p-blocked --kernel newest --seed 5 --iommu off');
  });

  it('transfers from a scenario file, with paths per transfer in JSON', async () => {
    const p = scenarioCopy('p2p-switch', (t) => t.replace(/64M/g, '2M'));
    const r = await run('run', p, '--json');
    expect(r.code).toBe(EXIT_OK);
    const j = JSON.parse(r.out);
    expect(j.rootComplexBytes).toBe(0);
    expect(j.transfers[0].path[0].hops.at(-1)).toBe('link 0000:02:09.0 down');
    expect(j.transfers[1].path[0].via).toBe('internal');
    expect(j.links.map((l: { name: string }) => l.name)).toContain('link 0000:02:08.0');
  });

  it('bad input exits 2 with file:line:col, an unknown name or seed too', async () => {
    const p = scenarioCopy('bounce', (t) => t.replace('queueDepth: 8 }', 'queueDepth: 8, qd: 1 }'));
    const bad = await run('run', p);
    expect(bad.code).toBe(EXIT_BAD_INPUT);
    expect(bad.err).toMatch(/bounce\.yaml:\d+:\d+: transfers\[0\]\.qd: unknown key "qd"/);
    const unknown = await run('run', 'p2p-nowhere');
    expect(unknown.code).toBe(EXIT_BAD_INPUT);
    expect(unknown.err).toContain('no built-in scenario "p2p-nowhere"');
    expect((await run('run', 'bounce', '--seed', 'x')).code).toBe(EXIT_BAD_INPUT);
  });

  it('quotes what needs quoting in the reproduce command', () => {
    expect(
      reproduceCommand('my scenario.yaml', { machine: 'm.yaml', kernel: '6.1', seed: 3, iommu: 'strict' }),
    ).toBe("dmasim run 'my scenario.yaml' --machine m.yaml --kernel 6.1 --seed 3 --iommu strict");
  });
});
