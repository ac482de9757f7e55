import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { listBuiltinMachines, loadBuiltinMachine } from '../../topology/machine-file/index.js';
import { bytes, dmaAddr, MiB } from '../addr.js';
import { SparseMemory } from '../memory/sparse-memory.js';
import type { Machine } from '../pci.js';
import { type DmaOutcome, fabricDma } from './data-path.js';
import { buildFabric, type Fabric, portRole } from './fabric.js';
import { describeHops } from './hops.js';
import { route } from './routing.js';
import { switchBox } from './test-machines.js';

function setup(m: Machine): { e: Engine; fab: Fabric } {
  const e = new Engine();
  return { e, fab: buildFabric(m, { flows: new FlowModel(e), linkRate: pcieLinkRate }) };
}

describe('buildFabric on the built-in machines', () => {
  const names = listBuiltinMachines().map((b) => b.name);
  it.each(names)('%s: a link below every port, windows from config, RAM clear of every BAR', (name) => {
    const m = loadBuiltinMachine(name);
    const { fab } = setup(m);
    expect(fab.rootComplexes).toHaveLength(m.hostBridges.length);
    const ports = m.functions.filter((f) => ['root-port', 'downstream'].includes(portRole(f)));
    expect(fab.links).toHaveLength(
      ports.length + m.functions.filter((f) => portRole(f) === 'pci-bridge').length,
    );
    for (const p of ports) {
      expect(fab.linkBelow(p)?.rateSource).toBe('link-status');
      expect(fab.windowSource(p)).toBe('config');
    }
    for (const r of fab.addressMap.ram) {
      expect(fab.addressMap.barByCpu(r.base)).toBeNull();
      expect(fab.addressMap.barByCpu(r.end - 1n)).toBeNull();
    }
    expect(fab.addressMap.notes).toEqual([]);
  });
  it('takes the lower end of a link: a Gen4 x4 NVMe behind a Gen3 port runs at Gen3 x4', () => {
    const { fab } = setup(loadBuiltinMachine('xeon-2s-switches'));
    const l = fab.linkBelow(fab.machine.byName.get('0000:3c:0a.0')!)!;
    expect([l.gen, l.width]).toEqual([3, 4]);
    expect(l.effectiveGBps).toBeCloseTo(pcieLinkRate(3, 4).effectiveGBps, 9);
  });
  it('falls back to the default Gen3 x16 for a link nobody reported', () => {
    const m = switchBox();
    const rp = m.byName.get('0000:00:02.0')!;
    (rp as { link: unknown }).link = null;
    (m.byName.get('0000:06:00.0') as { link: unknown }).link = null;
    const { fab } = setup(m);
    expect(fab.linkBelow(rp)).toMatchObject({ rateSource: 'default', gen: 3, width: 16 });
  });
  it('scales a link reported only in GB/s (hwloc) by the packet efficiency', () => {
    const m = switchBox();
    for (const n of ['0000:00:02.0', '0000:06:00.0'])
      (m.byName.get(n) as { link: unknown }).link = {
        speedGts: null,
        width: null,
        maxSpeedGts: null,
        maxWidth: null,
        bandwidthGBps: 31.5,
      };
    const { fab } = setup(m);
    const l = fab.linkBelow(m.byName.get('0000:00:02.0')!)!;
    expect(l.rateSource).toBe('bandwidth');
    expect(l.effectiveGBps).toBeCloseTo(31.5 * pcieLinkRate(4, 16).packetEfficiency, 9);
  });
});

describe('xeon-2s-switches: the kernel-programmed ACS decides the path', () => {
  const gpu = (m: Machine, os: string) => m.functions.find((f) => f.osNames.includes(os))!;
  const vram = (m: Machine, os: string) => gpu(m, os).bars.find((b) => b.index === 1)!.busStart;

  function copy(fab: Fabric, e: Engine, from: string, to: string): DmaOutcome {
    const m = fab.machine;
    const src = new SparseMemory('gpu buffer', 'bar', bytes(4n * MiB));
    src.fill(0, 4 * 1024 * 1024, 0x5a);
    let out: DmaOutcome | null = null;
    fabricDma(
      fab,
      {
        requester: gpu(m, from),
        kind: 'write',
        addr: dmaAddr(vram(m, to)),
        len: bytes(4n * MiB),
        local: { kind: 'memory', mem: src, offset: 0 },
      },
      (o) => (out = o),
    );
    e.run();
    return out!;
  }

  it('gpu0 -> gpu1: redirect disabled on the first switch (pci=disable_acs_redir), zero root-complex bytes', () => {
    const { e, fab } = setup(loadBuiltinMachine('xeon-2s-switches'));
    fab.attachIdentityDomains();
    const o = copy(fab, e, 'gpu0', 'gpu1');
    expect(o.ok && o.route.legs[0]!.via).toBe('peer');
    expect(fab.counters().rootComplexBytes).toBe(0);
    expect(fab.counters().hostMemoryBytes).toBe(0);
  });
  it('gpu2 -> gpu3: RR|CR on the downstream ports sends every byte through the root complex', () => {
    const { e, fab } = setup(loadBuiltinMachine('xeon-2s-switches'));
    fab.attachIdentityDomains();
    const o = copy(fab, e, 'gpu2', 'gpu3');
    expect(o.ok).toBe(true);
    expect(o.ok && describeHops(o.route.legs[0]!.hops)).toContain(
      'root complex pci0000:3a > iommu pci0000:3a',
    );
    expect(fab.counters().rootComplexBytes).toBe(4 * 1024 * 1024);
    expect(fab.counters().hostMemoryBytes).toBe(0);
  });
  it('gpu0 -> gpu4 crosses the socket link to the other root complex (Skylake-SP forwards)', () => {
    const { fab } = setup(loadBuiltinMachine('xeon-2s-switches'));
    fab.attachIdentityDomains();
    const m = fab.machine;
    const r = route(fab, gpu(m, 'gpu0'), dmaAddr(vram(m, 'gpu4')), bytes(4096), 'write');
    expect(r.ok && describeHops(r.legs[0]!.hops)).toContain('socket 0->1 > root complex pci0000:85');
  });
});
