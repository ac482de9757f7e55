import { describe, expect, it } from 'vitest';
import { MachineFileError } from '../../topology/machine-file/parse.js';
import { listBuiltinScenarios, parseScenario, resolveScenario } from './scenario-file.js';

const GOOD = `name: t
machine: machines/nvme-switch.yaml
buffers:
  b: { kind: anon }
transfers:
  - { name: r, op: read, device: nvme0, buffer: b, size: 1M, blockSize: 64K, queueDepth: 2 }
`;

function issues(text: string): string[] {
  try {
    parseScenario(text, 's.yaml');
  } catch (e) {
    if (e instanceof MachineFileError)
      return e.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
    throw e;
  }
  return [];
}

describe('scenario files', () => {
  it('parse sizes and resolve the machine file against the scenario directory', () => {
    const sc = parseScenario(GOOD, '/x/scenarios/t.yaml');
    expect(sc.doc.transfers[0]).toMatchObject({ size: 1n << 20n, blockSize: 64n << 10n, queueDepth: 2 });
    expect(sc.machineRef).toBe('/x/scenarios/machines/nvme-switch.yaml');
    expect(parseScenario(GOOD.replace('machines/nvme-switch.yaml', 'workstation'), 'a.yaml').machineRef).toBe(
      'workstation',
    );
  });

  it('report every problem with file:line:col', () => {
    expect(issues(GOOD.replace('queueDepth: 2', 'queueDepth: 2, depth: 3'))).toEqual([
      '6:93 transfers[0].depth: unknown key "depth"',
    ]);
    expect(issues(GOOD.replace('size: 1M', 'size: lots'))).toEqual([
      '6:58 transfers[0].size: "lots" is not a size (write e.g. 16384, "16K", "256M", "32G")',
    ]);
    expect(issues(GOOD.replace('buffer: b,', 'buffer: c,'))).toEqual([
      '6:49 transfers[0].buffer: no buffer "c" in buffers:',
    ]);
    expect(issues(`${GOOD}expect: { errors: [EWHAT] }\n`)).toEqual([
      '7:20 expect.errors[0]: "EWHAT" is not an errno name the model knows (e.g. EREMOTEIO, EINVAL)',
    ]);
    expect(issues('machine: [')[0]).toMatch(/^1:\d+ : YAML syntax error/);
    expect(issues('machine: m\nbuffers: {}\ntransfers: []\n')).toEqual([
      '3:12 transfers: a scenario needs at least one transfer',
    ]);
  });

  it('ships built-in scenarios that all parse, and finds them by name', () => {
    const names = listBuiltinScenarios().map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(['p2p-switch', 'p2p-acs', 'p2p-blocked', 'bounce', 'iommu-fault']),
    );
    expect(resolveScenario('p2p-switch')?.doc.machine).toBe('machines/nvme-switch.yaml');
    expect(resolveScenario('no-such-scenario')).toBeNull();
  });
});
