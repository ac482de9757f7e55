import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { bytes, dmaAddr, GiB, MiB, physAddr } from '../addr.js';
import { SparseMemory } from '../memory/sparse-memory.js';
import type { Machine, PciFunction } from '../pci.js';
import { PCI_ACS_CR, PCI_ACS_RR, PCI_ACS_SV, PCI_ACS_UF } from '../pci-regs.js';
import { type DevBuffer, type DmaOutcome, fabricDma } from './data-path.js';
import { attachDmaChecker } from './dma-checker.js';
import { buildFabric, type Fabric } from './fabric.js';
import { switchBox } from './test-machines.js';

const GEN4_X16 = pcieLinkRate(4, 16).effectiveGBps;
const GEN3_X4 = pcieLinkRate(3, 4).effectiveGBps;
const PF = 0x200000000000n;
const VRAM_04 = PF + GiB;
const LINUX_RP = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

const within1pct = (actual: number, expected: number): void =>
  expect(Math.abs(actual - expected) / expected).toBeLessThan(0.01);

function setup(m: Machine): { e: Engine; fab: Fabric; fn: (n: string) => PciFunction } {
  const e = new Engine();
  const fab = buildFabric(m, { flows: new FlowModel(e), linkRate: pcieLinkRate });
  return { e, fab, fn: (n) => m.byName.get(n)! };
}

function dma(
  fab: Fabric,
  requester: PciFunction,
  kind: 'read' | 'write',
  addr: bigint,
  len: bigint,
  local: DevBuffer,
): DmaOutcome[] {
  const out: DmaOutcome[] = [];
  fabricDma(fab, { requester, kind, addr: dmaAddr(addr), len: bytes(len), local }, (o) => out.push(o));
  return out;
}

/** Byte equality without the test runner's element-by-element diff (slow on megabytes). */
const same = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);

const pattern = (n: number, seed: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

describe('data path: bandwidth (issue #4 checks, within 1 %)', () => {
  it('one transfer alone on a Gen4 x16 path runs at the effective rate', () => {
    const { e, fab, fn } = setup(switchBox());
    const gpu = fn('0000:06:00.0');
    const vram = fab.addressMap.barMemory(gpu, 1);
    const out = dma(fab, gpu, 'read', 4n * GiB, GiB, { kind: 'memory', mem: vram, offset: 0 });
    e.run();
    const o = out[0]!;
    expect(o.ok).toBe(true);
    within1pct(o.endNs - o.startNs, Number(GiB) / GEN4_X16);
  });
  it('two transfers sharing that link each get half', () => {
    const { e, fab, fn } = setup(switchBox());
    const gpu = fn('0000:06:00.0');
    const vram = fab.addressMap.barMemory(gpu, 1);
    const a = dma(fab, gpu, 'read', 4n * GiB, 256n * MiB, { kind: 'memory', mem: vram, offset: 0 });
    const b = dma(fab, gpu, 'read', 5n * GiB, 256n * MiB, {
      kind: 'memory',
      mem: vram,
      offset: Number(256n * MiB),
    });
    e.run();
    for (const o of [a[0]!, b[0]!]) within1pct(o.endNs - o.startNs, (2 * Number(256n * MiB)) / GEN4_X16);
  });
  it('a transfer crossing a Gen3 x4 hop is limited by it', () => {
    const { e, fab, fn } = setup(switchBox());
    const local = new SparseMemory('nic buffer', 'bar', bytes(64n * MiB));
    const out = dma(fab, fn('0000:05:00.0'), 'read', 4n * GiB, 64n * MiB, {
      kind: 'memory',
      mem: local,
      offset: 0,
    });
    e.run();
    within1pct(out[0]!.endNs - out[0]!.startNs, Number(64n * MiB) / GEN3_X4);
  });
});

describe('data path: bytes and counters', () => {
  it('peer to peer under a switch: byte-exact, zero bytes through the root complex and host memory', () => {
    const { e, fab, fn } = setup(switchBox());
    const checker = attachDmaChecker(fab);
    const nvme = fn('0000:03:00.0');
    const cmb = fab.addressMap.barMemory(nvme, 2);
    const data = pattern(Number(8n * MiB), 7);
    cmb.write(4096, data);
    const out = dma(fab, nvme, 'write', VRAM_04 + 0x10000n, 8n * MiB, {
      kind: 'memory',
      mem: cmb,
      offset: 4096,
    });
    e.run();
    expect(out[0]!.ok).toBe(true);
    const vram = fab.addressMap.barMemory(fn('0000:04:00.0'), 1);
    expect(same(vram.readBytes(0x10000, data.length), data)).toBe(true);
    const c = fab.counters();
    expect(c.rootComplexBytes).toBe(0);
    expect(c.hostMemoryBytes).toBe(0);
    expect(c.links.find((l) => l.name === 'link 0000:02:00.0')!.up).toBe(Number(8n * MiB));
    expect(c.links.find((l) => l.name === 'link 0000:02:01.0')!.down).toBe(Number(8n * MiB));
    expect(checker.violations).toEqual([]);
    expect(checker.bytesChecked).toBe(Number(8n * MiB));
  });
  it('with ACS redirect the same transfer crosses the root complex (and still no host memory)', () => {
    const { e, fab, fn } = setup(switchBox({ dspAcs: PCI_ACS_RR | PCI_ACS_CR, rootPortAcs: LINUX_RP }));
    const nvme = fn('0000:03:00.0');
    const cmb = fab.addressMap.barMemory(nvme, 2);
    cmb.write(0, pattern(4096, 1));
    const out = dma(fab, nvme, 'write', VRAM_04, 4n * MiB, { kind: 'memory', mem: cmb, offset: 0 });
    e.run();
    expect(out[0]!.ok).toBe(true);
    const c = fab.counters();
    expect(c.rootComplexBytes).toBe(Number(4n * MiB));
    expect(c.hostMemoryBytes).toBe(0);
    expect(c.links.find((l) => l.name === 'link 0000:00:01.0')).toMatchObject({
      up: Number(4n * MiB),
      down: Number(4n * MiB),
    });
    expect(c.switches[0]!.bytes).toBe(2 * Number(4n * MiB));
  });
  it('with ACS redirect and an IOMMU the device uses an IOVA for the peer BAR: every byte through the root complex', () => {
    const { e, fab, fn } = setup(
      switchBox({ iommu: true, dspAcs: PCI_ACS_RR | PCI_ACS_CR, rootPortAcs: LINUX_RP }),
    );
    const nvme = fn('0000:03:00.0');
    const unit = fab.iommuFor(nvme)!;
    const d = unit.allocDomain('paging')!;
    unit.attach(nvme.name, d);
    unit.map(d, 0x1_0000_0000n, VRAM_04, 0x200000n, 2, { read: true, write: true });
    unit.map(d, 0x8000_0000n, VRAM_04, 0x200000n, 1, { read: true, write: true });
    const cmb = fab.addressMap.barMemory(nvme, 2);
    const data = pattern(Number(4n * MiB), 4);
    cmb.write(0, data);
    const before = unit.stats.translations;
    const out = dma(fab, nvme, 'write', 0x1_0000_0000n, 4n * MiB, { kind: 'memory', mem: cmb, offset: 0 });
    e.run();
    expect(out[0]!.ok).toBe(true);
    expect(unit.stats.translations - before).toBe(1);
    const vram = fab.addressMap.barMemory(fn('0000:04:00.0'), 1);
    expect(same(vram.readBytes(0, data.length), data)).toBe(true);
    expect(fab.counters().rootComplexBytes).toBe(Number(4n * MiB));
    expect(fab.counters().hostMemoryBytes).toBe(0);
    // The bus address of the BAR itself is not mapped in the domain: used directly it faults.
    const raw = dma(fab, nvme, 'write', VRAM_04, 4096n, { kind: 'memory', mem: cmb, offset: 0 });
    e.run();
    expect(!raw[0]!.ok && raw[0]!.reason).toBe('iommu-fault');
    // An IOVA inside a bridge window never reaches the IOMMU (why Linux reserves those ranges in
    // every DMA domain): here it is below the NVMe's own port, so the port refuses it.
    const inWindow = dma(fab, nvme, 'write', 0x8000_0000n, 4096n, { kind: 'memory', mem: cmb, offset: 0 });
    e.run();
    expect(!inWindow[0]!.ok && inWindow[0]!.reason).toBe('unsupported-request');
  });
  it('a read brings RAM bytes into the device buffer and counts them on the way down', () => {
    const { e, fab, fn } = setup(switchBox());
    const ram = fab.addressMap.ram.find((r) => r.node === 1)!;
    const data = pattern(65536, 3);
    ram.mem.write(8192, data);
    const local = new Uint8Array(65536);
    const out = dma(fab, fn('0000:06:00.0'), 'read', ram.base + 8192n, 65536n, {
      kind: 'bytes',
      bytes: local,
    });
    e.run();
    expect(out[0]!.ok).toBe(true);
    expect(same(local, data)).toBe(true);
    const c = fab.counters();
    expect(c.socketLinkBytes).toBe(65536);
    expect(c.memory).toEqual([
      { node: 0, bytes: 0 },
      { node: 1, bytes: 65536 },
    ]);
    expect(c.links.find((l) => l.name === 'link 0000:00:02.0')).toMatchObject({ up: 0, down: 65536 });
  });
  it('a DMA to an unmapped IOVA is a recorded IOMMU fault and moves no bytes', () => {
    const { e, fab, fn } = setup(switchBox({ iommu: true }));
    const gpu = fn('0000:06:00.0');
    const unit = fab.iommuFor(gpu)!;
    const d = unit.allocDomain('paging')!;
    unit.attach(gpu.name, d);
    const before = fab.addressMap.ram[0]!.mem.checksum(0, 1 << 20);
    const out = dma(fab, gpu, 'write', 0x1000n, 1n << 20n, { kind: 'bytes', bytes: pattern(1 << 20, 9) });
    e.run();
    const o = out[0]!;
    expect(o.ok).toBe(false);
    expect(!o.ok && o.reason).toBe('iommu-fault');
    expect(!o.ok && o.fault).toMatchObject({ requester: gpu.name, reason: 'not-present', access: 'write' });
    expect(unit.faults).toHaveLength(1);
    expect(fab.addressMap.ram[0]!.mem.checksum(0, 1 << 20)).toBe(before);
    expect(fab.counters().links.every((l) => l.up === 0 && l.down === 0)).toBe(true);
    expect(fab.dmaStats.refused).toEqual({ 'iommu-fault': 1 });
    // The refusal comes back after the round trip to the root complex, not instantly.
    expect(o.endNs - o.startNs).toBeGreaterThan(0);
  });
  it('a translated DMA scattered over pages on two nodes lands byte-exactly (checker clean)', () => {
    const { e, fab, fn } = setup(switchBox({ iommu: true }));
    const checker = attachDmaChecker(fab);
    const gpu = fn('0000:06:00.0');
    const unit = fab.iommuFor(gpu)!;
    const d = unit.allocDomain('paging')!;
    unit.attach(gpu.name, d);
    const node1 = fab.addressMap.ram.find((r) => r.node === 1)!;
    const phys = [0x7000n, node1.base + 0x3000n, 0x2000n, node1.base];
    for (const [i, p] of phys.entries())
      unit.map(d, 0x100000n + BigInt(i) * 4096n, p, 4096n, 1, { read: true, write: true });
    const data = pattern(4 * 4096, 5);
    const out = dma(fab, gpu, 'write', 0x100000n, 16384n, { kind: 'bytes', bytes: data });
    e.run();
    expect(out[0]!.ok).toBe(true);
    phys.forEach((p, i) => {
      const got = new Uint8Array(4096);
      fab.addressMap.cpuRead(physAddr(p), got);
      expect(same(got, data.subarray(i * 4096, (i + 1) * 4096))).toBe(true);
    });
    expect(checker.violations).toEqual([]);
    expect(checker.bytesChecked).toBe(16384);
    expect(fab.counters().memory.map((m) => m.bytes)).toEqual([8192, 8192]);
  });
  it('the checker reports bytes that arrive different from their source', () => {
    const { e, fab, fn } = setup(switchBox());
    // A faulty observer that scribbles on the destination after the move, before the checker looks.
    fab.observers.push({
      afterMove: (_o, r) =>
        void (
          r.legs[0]!.target.kind === 'ram' &&
          r.legs[0]!.target.region.mem.fill(r.legs[0]!.target.offset, 1, 0xee)
        ),
    });
    const checker = attachDmaChecker(fab);
    dma(fab, fn('0000:06:00.0'), 'write', 0x10000n, 4096n, { kind: 'bytes', bytes: pattern(4096, 1) });
    e.run();
    expect(checker.violations).toHaveLength(1);
    expect(checker.violations[0]).toContain('arrived different');
  });
});
