// The dma-buf scenarios end to end on the built-in scenario files: the dmabuf-evict run verifies every
// byte and finds no DMA to memory the buffer left; vfio-revoke reaches the BAR before the revoke returns
// and never after; seeds reproduce; scenario files report their problems with file:line:col.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Machine } from '../../../hw/pci.js';
import { loadMachineFile } from '../../../topology/machine-file/index.js';
import { MachineFileError } from '../../../topology/machine-file/parse.js';
import { SCENARIO_DIR } from '../scenario-file.js';
import type { DmabufEvictResult } from './dmabuf-evict.js';
import { dmabufRunGood, runDmabufScenario } from './dmabuf-run.js';
import {
  isDmabufScenarioText,
  listDmabufScenarios,
  parseDmabufScenario,
  resolveDmabufScenario,
} from './dmabuf-scenario-file.js';
import type { VfioRevokeResult } from './vfio-revoke.js';

const machine = (): Machine => loadMachineFile(join(SCENARIO_DIR, 'machines/gpu-nic-switch.yaml'));
const text = (name: string) => readFileSync(join(SCENARIO_DIR, `${name}.yaml`), 'utf8');
const scenario = (name: string, edit: (t: string) => string = (t) => t) =>
  parseDmabufScenario(edit(text(name)), join(SCENARIO_DIR, `${name}.yaml`));

describe('dmabuf-evict', () => {
  it('evicts mid-stream and moves back: two re-maps, every byte verified, no DMA to left memory', () => {
    const r = runDmabufScenario(machine(), scenario('dmabuf-evict')) as DmabufEvictResult;
    expect(dmabufRunGood(r)).toBe(true);
    expect([
      r.verified,
      r.destinationVerified,
      r.accessesToOldLocation,
      r.evictions,
      r.moves,
      r.pageFaults,
    ]).toEqual([true, true, 0, 1, 2, 2]);
    expect(r.mappings.map((m) => m.placement)).toEqual(['vram', 'gtt', 'vram']);
    expect(r.mappings.reduce((a, m) => a + m.bytes, 0)).toBe(64 << 20);
    const what = r.timeline.map((e) => e.what);
    for (const w of [
      'export',
      'attach',
      'map',
      'evict',
      'move_notify: MTT zapped',
      'page fault',
      'move done',
      're-mapped',
      'DMA chunks',
      'stream finished',
    ])
      expect(what).toContain(w);
    expect(r.timeline.map((e) => e.ns)).toEqual([...r.timeline.map((e) => e.ns)].sort((a, b) => a - b));
    expect(r.warnings).toEqual([]);
  });

  it('the same seed gives the same run; the 6.1 profile runs it with move_notify', () => {
    const a = runDmabufScenario(
      machine(),
      scenario('dmabuf-evict', (t) => t.replace('64M', '8M').replace('moveBack: { at: 4.5ms }', '')),
    );
    const b = runDmabufScenario(
      machine(),
      scenario('dmabuf-evict', (t) => t.replace('64M', '8M').replace('moveBack: { at: 4.5ms }', '')),
    );
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    const old = runDmabufScenario(
      machine(),
      scenario('dmabuf-evict', (t) => t.replace('64M', '8M')),
      { kernel: '6.1', iommu: 'off' },
    );
    expect(old.verified).toBe(true);
  });
});

describe('vfio-revoke', () => {
  it('no importer reaches the BAR after the revoke returns; attempts are faults; nothing corrupted', () => {
    const r = runDmabufScenario(machine(), scenario('vfio-revoke')) as VfioRevokeResult;
    expect(dmabufRunGood(r)).toBe(true);
    expect(r.accessesAfterRevoke).toBe(0);
    expect(r.accessesBeforeRevoke).toBeGreaterThan(0);
    expect(r.revokeReturnedNs).toBeGreaterThan(r.revokeStartNs!);
    expect(r.resetDoneNs).toBeGreaterThan(r.revokeReturnedNs!);
    expect(r.iommuFaults.map((f) => [f.access, f.reason])).toEqual([['write', 'not-present']]);
    expect([r.iommufd.status, r.rdma.status]).toEqual(['IOMMU fault (not-present)', 'page-fault-failed']);
    expect([r.barIntact, r.rdmaDataVerified]).toEqual([true, true]);
    expect(r.iommufd.firstFailureNs).toBeLessThanOrEqual(r.revokeReturnedNs!);
    // Both importers did real work before the reset.
    expect(r.iommufd.bytes).toBeGreaterThan(0);
    expect(r.rdma.bytes).toBeGreaterThan(0);
  });

  it('refuses settings it cannot run with', () => {
    expect(() => runDmabufScenario(machine(), scenario('vfio-revoke'), { iommu: 'off' })).toThrow(
      /needs an IOMMU/,
    );
    expect(() => runDmabufScenario(machine(), scenario('vfio-revoke'), { kernel: '6.1' })).toThrow(/6\.19/);
    expect(() =>
      runDmabufScenario(
        machine(),
        scenario('vfio-revoke', (t) => t.replace('device: gpu0', 'device: gpu9')),
      ),
    ).toThrow(/device "gpu9" is not a device of gpu-nic-switch/);
  });
});

describe('dma-buf scenario files', () => {
  it('are found by name and listed, and recognised by their kind', () => {
    expect(listDmabufScenarios().map((s) => s.name)).toEqual(['dmabuf-evict', 'vfio-revoke']);
    expect(resolveDmabufScenario('dmabuf-evict')?.doc.kind).toBe('dmabuf-evict');
    expect(resolveDmabufScenario('p2p-switch')).toBeNull();
    expect(isDmabufScenarioText('kind: vfio-revoke\n')).toBe(true);
    expect(isDmabufScenarioText('name: x\n')).toBe(false);
  });

  it('report problems with file:line:col', () => {
    const bad = text('vfio-revoke').replace('reset: { at: 200us, duration: 1ms }', 'reset: { at: soon }');
    try {
      parseDmabufScenario(bad, 'v.yaml');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(MachineFileError);
      expect((e as MachineFileError).issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
        'reset.at: "soon" is not a time (write e.g. 1000, "300us", "1.5ms")',
      ]);
    }
  });
});
