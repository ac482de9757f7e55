import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadMachineFile } from '../../topology/machine-file/index.js';
import { type RunResult, runScenario } from './runner.js';
import { parseScenario, SCENARIO_DIR } from './scenario-file.js';

/** A built-in scenario with its sizes cut to 4 MiB (same machine, same transfers). */
function run(name: string, edit: (t: string) => string = (t) => t): RunResult {
  const path = join(SCENARIO_DIR, `${name}.yaml`);
  const text = edit(readFileSync(path, 'utf8').replace(/\b(64|16)M\b/g, '4M'));
  const sc = parseScenario(text, path);
  return runScenario(loadMachineFile(sc.machineRef), sc);
}

const ok = (r: RunResult): void => {
  expect(r.expectations.filter((x) => !x.ok)).toEqual([]);
  expect(r.verified).toBe(true);
};

describe('built-in scenarios', () => {
  it('p2p-switch: every data byte stays below the switch, and is verified', () => {
    const r = run('p2p-switch');
    ok(r);
    expect(r.bytesMoved).toBe(8 << 20);
    expect([r.rootComplexBytes, r.hostMemoryBytes]).toEqual([0, 0]);
    const read = r.transfers[0]!;
    expect(read.traffic.paths.map((p) => [p.via, p.target, p.bytes])).toEqual([
      ['peer', '0000:04:00.0 BAR2', 4 << 20],
    ]);
    expect(read.traffic.paths[0]!.hops).toEqual([
      '0000:03:00.0 (DMA write)',
      'link 0000:02:08.0 up',
      'switch 0000:01:00.0',
      'link 0000:02:09.0 down',
    ]);
    expect(r.transfers[1]!.internalBytes).toBe(4 << 20);
    // munmap at exit gives every CMB page back to the pool.
    expect(r.pools).toEqual([
      { provider: 'nvme1', size: 256 << 20, availableMapped: 252 << 20, availableAfter: 256 << 20 },
    ]);
  });

  it('p2p-acs: all P2P data through the root complex and the IOMMU (IOVAs), with the kernel warning', () => {
    const r = run('p2p-acs');
    ok(r);
    expect(r.rootComplexBytes).toBe(4 << 20);
    expect(r.rootComplexBytes).toBe(r.bytesMoved);
    expect(r.transfers[0]!.traffic.iovaBytes).toBe(4 << 20);
    expect(r.transfers[0]!.traffic.paths[0]!.hops).toContain('iommu pci0000:00');
    expect(
      r.kernelLog.some((l) =>
        l.endsWith('ACS redirect is set between the client and provider (0000:04:00.0)'),
      ),
    ).toBe(true);
  });

  it('p2p-blocked: -EREMOTEIO as Linux 6.1 gives it, nothing written, the next step skipped', () => {
    const r = run('p2p-blocked');
    ok(r);
    expect(r.errors.map((e) => e.errno)).toEqual(['EREMOTEIO']);
    expect(r.transfers[1]!.skipped).toBe(true);
    expect(r.bytesMoved).toBe(0);
    expect(r.kernelLog.at(-1)).toMatch(/critical target error, dev nvme0n1, sector 0 op 0x0:\(READ\)/);
  });

  it('p2p-blocked-user: the newest kernel refuses the userspace buffer with -EINVAL', () => {
    const r = run('p2p-blocked-user');
    ok(r);
    expect(r.errors.map((e) => e.errno)).toEqual(['EINVAL']);
  });

  it('bounce: the same copy through host memory: all data through the root complex, twice', () => {
    const r = run('bounce');
    ok(r);
    expect(r.rootComplexBytes).toBe(8 << 20);
    expect(r.hostMemoryBytes).toBe(8 << 20);
  });

  it('iommu-fault: a DMA to unmapped IOVAs is a recorded fault that moves no byte', () => {
    const r = run('iommu-fault');
    ok(r);
    expect(r.iommuFaults).toHaveLength(1);
    expect(r.iommuFaults[0]).toMatchObject({
      requester: '0000:03:00.0',
      access: 'write',
      reason: 'not-present',
    });
    expect(r.bytesMoved).toBe(0);
    expect(r.transfers[0]!.traffic.dataBytes).toBe(0);
  });

  it('is deterministic for a seed, and the seed changes the data', () => {
    const a = run('bounce');
    const b = run('bounce');
    expect(b.durationNs).toBe(a.durationNs);
    expect(b.links).toEqual(a.links);
    const c = run('bounce', (t) => t.replace('seed: 1', 'seed: 7'));
    expect(c.seed).toBe(7);
    expect(c.verified).toBe(true);
  });
});
