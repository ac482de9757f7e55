// The command line end to end, in process: outputs, exit codes, and one clear message for bad input.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT_BAD_INPUT, EXIT_OK } from '../src/cli/exit.js';
import { runCli } from './helpers/run-cli.js';

const SHARED = join(import.meta.dirname, '..', '..', 'shared', 'fixtures');

const run = runCli;

afterEach(() => vi.restoreAllMocks());

describe('dmasim p2p', () => {
  it('reports the default machine as text', async () => {
    const r = await run('p2p', '--machine', 'default', '--no-color');
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toContain('dmasim p2p: xeon-2s-switches');
    expect(r.out).toMatch(/pci=disable_acs_redir=0000:3c:08\.0;0000:3c:09\.0;0000:3c:0a\.0/);
    expect(r.out).toContain('no device to whitelist');
  });

  it('gives the kernel decision of an oracle snapshot through --json', async () => {
    const r = await run(
      'p2p',
      '--input',
      join(SHARED, 'oracle', 'switch-iommu.tar.gz'),
      '--kernel',
      '6.1',
      '--json',
    );
    expect(r.code).toBe(EXIT_OK);
    const doc = JSON.parse(r.out) as {
      kernel: string;
      pairs: { provider: string; client: string; mapType: string; distance: number; warnings: string[] }[];
    };
    const exp = JSON.parse(readFileSync(join(SHARED, 'oracle', 'switch-iommu.expected.json'), 'utf8')) as {
      pairs: typeof doc.pairs;
    };
    expect(doc.kernel).toBe('6.1');
    const key = (p: (typeof doc.pairs)[number]) => `${p.provider}>${p.client}`;
    const got = new Map(doc.pairs.map((p) => [key(p), [p.mapType, p.distance, p.warnings]]));
    expect(got.size).toBe(exp.pairs.length);
    for (const p of exp.pairs) expect(got.get(key(p))).toEqual([p.mapType, p.distance, p.warnings]);
  });

  it('reads hwloc XML and filters by kind', async () => {
    const r = await run(
      'p2p',
      '--input',
      join(SHARED, 'real', 'hwloc', 'xml', 'nvidiaDGX2.xml'),
      '--filter',
      'gpu',
      '--json',
    );
    expect(r.code).toBe(EXIT_OK);
    const doc = JSON.parse(r.out) as { endpoints: unknown[]; pairs: { class: string }[] };
    expect(doc.endpoints.length).toBe(16);
    expect(doc.pairs.filter((p) => p.class === 'PIX').length).toBe(16);
  });

  it('explains one pair step by step', async () => {
    const r = await run('p2p', '--machine', 'default', '--explain', '0000:3d:00.0', '0000:3e:00.0');
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toContain('common upstream device');
    expect(r.out).toMatch(/result: THRU_HOST_BRIDGE, pci_p2pdma_distance\(\) = 4/);
    expect(r.out).toContain(
      'to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:3c:08.0;0000:3c:09.0',
    );
  });

  it('lists the built-in machines', async () => {
    const r = await run('machines');
    expect(r.out).toMatch(/xeon-2s-switches \(default\)/);
  });
});

describe('bad input: one message naming the input, exit 2, no stack trace', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmasim-cli-'));
  const cases: [string, string[], RegExp][] = [
    ['a missing file', ['p2p', '--input', join(dir, 'nope.tar.gz')], /nope\.tar\.gz: no such file/],
    [
      'an unknown format',
      [
        'p2p',
        '--input',
        (() => {
          const f = join(dir, 'junk.bin');
          writeFileSync(f, Buffer.from([0, 1, 2, 3, 255, 254]));
          return f;
        })(),
      ],
      /junk\.bin: unknown input format/,
    ],
    [
      'a YAML syntax error',
      [
        'p2p',
        '--input',
        (() => {
          const f = join(dir, 'bad.yaml');
          writeFileSync(f, 'name: x\ncpu: [\n');
          return f;
        })(),
      ],
      /bad\.yaml:\d+:\d+/,
    ],
    ['an unknown machine', ['p2p', '--machine', 'no-such-box'], /no-such-box/],
    ['an unknown kernel profile', ['p2p', '--machine', 'default', '--kernel', '5.0'], /5\.0/],
    [
      'an unknown filter word',
      ['p2p', '--machine', 'default', '--filter', 'gpus'],
      /unknown filter word "gpus"/,
    ],
    [
      'a one-device --explain',
      ['p2p', '--machine', 'default', '--explain', '0000:3d:00.0'],
      /two PCI addresses/,
    ],
    [
      'an unknown device in --explain',
      ['p2p', '--machine', 'default', '--explain', '0000:3d:00.0', '0000:99:00.0'],
      /0000:99:00\.0: no such PCI function/,
    ],
    ['two sources', ['p2p', '--machine', 'default', '--input', 'x'], /only one of/],
  ];
  for (const [what, args, msg] of cases) {
    it(what, async () => {
      const r = await run(...args);
      expect(r.code).toBe(EXIT_BAD_INPUT);
      expect(r.err).toMatch(msg);
      expect(r.err).not.toMatch(/\n\s+at /);
    });
  }
});
