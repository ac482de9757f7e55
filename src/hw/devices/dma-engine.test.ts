import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { bytes, dmaAddr, GiB, MiB } from '../addr.js';
import { attachDmaChecker } from '../fabric/dma-checker.js';
import { buildFabric, type Fabric } from '../fabric/fabric.js';
import { switchBox } from '../fabric/test-machines.js';
import type { Machine } from '../pci.js';
import { type CopyResult, DmaEngine } from './dma-engine.js';

function setup(m: Machine = switchBox()): { e: Engine; fab: Fabric } {
  const e = new Engine();
  return { e, fab: buildFabric(m, { flows: new FlowModel(e), linkRate: pcieLinkRate }) };
}
const RAM = 4n * GiB;

function copy(e: Engine, eng: DmaEngine, src: bigint, dst: bigint, len: bigint): CopyResult {
  let out: CopyResult | null = null;
  eng.submit({ src: dmaAddr(src), dst: dmaAddr(dst), len: bytes(len) }, (r) => (out = r));
  e.run();
  if (!out) throw new Error('copy never completed');
  return out;
}

describe('DmaEngine', () => {
  it('copies RAM to RAM byte-exactly in chunks through the fabric', () => {
    const { e, fab } = setup();
    const checker = attachDmaChecker(fab);
    const ram = fab.addressMap.ram.find((r) => r.node === 0 && r.base === RAM)!;
    const data = new Uint8Array(3 * 1024 * 1024 + 123).map((_, i) => (i * 7) & 0xff);
    ram.mem.write(0, data);
    const eng = new DmaEngine(fab, fab.machine.byName.get('0000:00:1f.0')!, { chunkBytes: 1 << 20 });
    const r = copy(e, eng, RAM, RAM + 64n * MiB, BigInt(data.length));
    expect(r.ok).toBe(true);
    expect(Buffer.from(ram.mem.readBytes(Number(64n * MiB), data.length)).equals(data)).toBe(true);
    expect(eng.stats.chunks).toBe(4);
    expect(fab.counters().hostMemoryBytes).toBe(2 * data.length);
    expect(checker.violations).toEqual([]);
  });
  it('overlaps reads and writes with a queue depth above one', () => {
    const time = (depth: number): number => {
      const { e, fab } = setup();
      const eng = new DmaEngine(fab, fab.machine.byName.get('0000:06:00.0')!, {
        chunkBytes: 1 << 20,
        queueDepth: depth,
      });
      const r = copy(e, eng, RAM, RAM + GiB, 256n * MiB);
      return r.endNs - r.startNs;
    };
    const oneWay = Number(256n * MiB) / pcieLinkRate(4, 16).effectiveGBps;
    // Depth 1: every chunk is read, then written: twice the one-way time. Depth 4: both directions
    // busy; what remains above one-way is one chunk plus each read's round-trip latency (~2 %).
    expect(time(1) / oneWay).toBeGreaterThan(1.95);
    expect(Math.abs(time(4) / oneWay - 1)).toBeLessThan(0.03);
  });
  it('stops a descriptor at the first refused chunk and reports the bytes that arrived', () => {
    const { e, fab } = setup(switchBox({ iommu: true }));
    const fn = fab.machine.byName.get('0000:06:00.0')!;
    const unit = fab.iommuFor(fn)!;
    const d = unit.allocDomain('paging')!;
    unit.attach(fn.name, d);
    unit.map(d, 0x200000n, RAM, 0x200000n, 1, { read: true, write: true }); // 2 MiB of source
    unit.map(d, 0x40000000n, RAM + GiB, 0x40000000n, 1, { read: true, write: true }); // 1 GiB of destination
    const eng = new DmaEngine(fab, fn, { chunkBytes: 1 << 20, queueDepth: 1 });
    const r = copy(e, eng, 0x200000n, 0x40000000n, 4n * MiB);
    expect(r.ok).toBe(false);
    expect(!r.ok && [r.reason, r.bytesDone]).toEqual(['iommu-fault', 2 * 1024 * 1024]);
    expect(!r.ok && r.fault?.iova).toBe(0x400000n);
    expect(eng.stats.failures).toBe(1);
    expect(eng.pending).toBe(0);
  });
});
