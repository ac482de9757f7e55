import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Bytes, bytes, MiB, type PhysAddr, physAddr } from '../../hw/addr.js';
import { createKernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import {
  DMA_ATTR_NO_WARN,
  DMA_ATTR_SKIP_CPU_SYNC,
  type DmaDirection,
  type PhysMemoryAccessor,
} from './dma-types.js';
import {
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
  isSwiotlbBuffer,
  type SwiotlbDevice,
  type SwiotlbPool,
  swiotlbAreaCount,
  swiotlbInitPool,
  swiotlbMaxMappingSize,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle,
  swiotlbTblUnmapSingle,
  swiotlbUsed,
} from './swiotlb.js';

/** Sparse byte memory: 4 KiB pages created on first write; unwritten bytes read as 0. */
class SparseMemory implements PhysMemoryAccessor {
  private readonly pages = new Map<bigint, Uint8Array>();
  read(phys: PhysAddr, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const a = phys + BigInt(i);
      out[i] = this.pages.get(a >> 12n)?.[Number(a & 0xfffn)] ?? 0;
    }
    return out;
  }
  write(phys: PhysAddr, data: Uint8Array): void {
    data.forEach((b, i) => {
      const a = phys + BigInt(i);
      let p = this.pages.get(a >> 12n);
      if (p === undefined) {
        p = new Uint8Array(4096);
        this.pages.set(a >> 12n, p);
      }
      p[Number(a & 0xfffn)] = b;
    });
  }
}

const POOL_START = physAddr(0x4000_0000n);
const dev = (minAlignMask = 0, segBoundaryMask = (1n << 64n) - 1n): SwiotlbDevice => ({
  name: 'nvme 0000:01:00.0',
  minAlignMask,
  segBoundaryMask,
});

function pool(version: KernelVersion = 'newest', sizeBytes: Bytes = bytes(MiB), nrCpus = 1) {
  const memory = new SparseMemory();
  const log = createKernelLog();
  const p = swiotlbInitPool({ version, start: POOL_START, sizeBytes, nrCpus, memory, log });
  return { p, memory, log };
}

const pattern = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

function mapOk(
  p: SwiotlbPool,
  d: SwiotlbDevice,
  orig: bigint,
  size: number,
  dir: DmaDirection,
  extra = {},
): PhysAddr {
  const r = swiotlbTblMapSingle(p, d, physAddr(orig), bytes(size), { dir, cpu: 0, ...extra });
  if (!r.ok) throw new Error(`map failed: ${r.detail}`);
  return r.value;
}

describe('pool setup', () => {
  it('defaults to 64 MiB = 32768 slots of 2 KiB, areas from the CPU count', () => {
    const p = swiotlbInitPool({ start: POOL_START, nrCpus: 3, memory: new SparseMemory() });
    expect([p.nslabs, p.nareas, p.areaNslabs]).toEqual([32768, 4, 8192]);
    expect(p.end - p.start).toBe(64n * MiB);
    expect(p.list[0]).toBe(IO_TLB_SEGSIZE);
    expect(p.list[IO_TLB_SEGSIZE - 1]).toBe(1);
    expect(isSwiotlbBuffer(p, POOL_START)).toBe(true);
    expect(isSwiotlbBuffer(p, p.end)).toBe(false);
  });
  it('limits the areas so each has at least one segment', () => {
    expect(swiotlbAreaCount(512, 32768)).toBe(256);
    expect(swiotlbAreaCount(8, 512)).toBe(4);
    expect(swiotlbAreaCount(1, 512)).toBe(1);
  });
});

describe('direction rules with real bytes', () => {
  const ORIG = 0x10_0000n;
  const N = 3000;

  for (const version of ['6.1', 'newest'] as const) {
    it(`${version}: map always copies original -> bounce, whatever the direction`, () => {
      for (const dir of ['to-device', 'from-device', 'bidirectional'] as const) {
        const { p, memory } = pool(version);
        memory.write(physAddr(ORIG), pattern(N, 1));
        const tlb = mapOk(p, dev(), ORIG, N, dir);
        expect(memory.read(tlb, N)).toEqual(pattern(N, 1));
      }
    });

    it(`${version}: unmap copies back for from-device and bidirectional, not to-device or SKIP_CPU_SYNC`, () => {
      const cases: [DmaDirection, number, boolean][] = [
        ['to-device', 0, false],
        ['from-device', 0, true],
        ['bidirectional', 0, true],
        ['from-device', DMA_ATTR_SKIP_CPU_SYNC, false],
      ];
      for (const [dir, attrs, copiedBack] of cases) {
        const { p, memory } = pool(version);
        memory.write(physAddr(ORIG), pattern(N, 1));
        const tlb = mapOk(p, dev(), ORIG, N, dir);
        memory.write(tlb, pattern(N, 9)); // the device writes the bounce buffer
        swiotlbTblUnmapSingle(p, dev(), tlb, bytes(N), dir, attrs);
        expect(memory.read(physAddr(ORIG), N)).toEqual(copiedBack ? pattern(N, 9) : pattern(N, 1));
        expect(swiotlbUsed(p)).toBe(0);
      }
    });
  }

  it('sync_for_cpu copies back for from-device/bidirectional; sync_for_device forward for to-device/bidirectional', () => {
    const { p, memory } = pool();
    memory.write(physAddr(ORIG), pattern(N, 1));
    const tlb = mapOk(p, dev(), ORIG, N, 'bidirectional');
    memory.write(tlb, pattern(N, 5));
    swiotlbSyncSingleForCpu(p, dev(), tlb, bytes(N), 'bidirectional');
    expect(memory.read(physAddr(ORIG), N)).toEqual(pattern(N, 5));
    memory.write(physAddr(ORIG), pattern(N, 6));
    swiotlbSyncSingleForDevice(p, dev(), tlb, bytes(N), 'bidirectional');
    expect(memory.read(tlb, N)).toEqual(pattern(N, 6));
    // A partial sync from inside the mapping moves only that part.
    memory.write(tlb, pattern(N, 7));
    swiotlbSyncSingleForCpu(p, dev(), physAddr(tlb + 100n), bytes(50), 'from-device');
    const back = memory.read(physAddr(ORIG), N);
    expect(back.slice(100, 150)).toEqual(pattern(N, 7).slice(100, 150));
    expect(back.slice(0, 100)).toEqual(pattern(N, 6).slice(0, 100));
  });

  it('sync in the direction that has nothing to copy copies nothing; a direction of none is a BUG', () => {
    const { p, memory } = pool();
    memory.write(physAddr(ORIG), pattern(N, 1));
    const tlb = mapOk(p, dev(), ORIG, N, 'to-device');
    memory.write(tlb, pattern(N, 3));
    swiotlbSyncSingleForCpu(p, dev(), tlb, bytes(N), 'to-device');
    expect(memory.read(physAddr(ORIG), N)).toEqual(pattern(N, 1));
    swiotlbSyncSingleForDevice(p, dev(), tlb, bytes(N), 'from-device');
    expect(memory.read(tlb, N)).toEqual(pattern(N, 3));
    expect(() => swiotlbSyncSingleForCpu(p, dev(), tlb, bytes(N), 'none')).toThrow(/BUG/);
    expect(() => swiotlbSyncSingleForDevice(p, dev(), tlb, bytes(N), 'none')).toThrow(/BUG/);
  });
});

describe('slot placement', () => {
  for (const version of ['6.1', 'newest'] as const) {
    it(`${version}: keeps the min_align_mask bits of the original (NVMe 0xfff)`, () => {
      const { p } = pool(version);
      for (const orig of [0x1234n, 0x1a34n, 0x2fffn, 0x3000n]) {
        const tlb = mapOk(p, dev(0xfff), orig, 512, 'to-device');
        expect(tlb & 0xfffn).toBe(orig & 0xfffn);
      }
    });

    it(`${version}: mappings of a page or more are page-aligned`, () => {
      const { p } = pool(version);
      const small = mapOk(p, dev(), 0x1000n, 100, 'to-device');
      expect(small).toBe(POOL_START);
      const big = mapOk(p, dev(), 0x5000n, 4096, 'to-device');
      expect(big).toBe(physAddr(POOL_START + 0x1000n));
    });

    it(`${version}: never crosses the device segment boundary`, () => {
      const { p } = pool(version);
      const d64k = dev(0, 0xffffn); // 32 slots per boundary window
      mapOk(p, d64k, 0x100000n, 28 * IO_TLB_SIZE, 'to-device');
      expect(mapOk(p, d64k, 0x200000n, 8 * IO_TLB_SIZE, 'to-device')).toBe(physAddr(POOL_START + 0x10000n));
      const { p: q } = pool(version);
      mapOk(q, dev(), 0x100000n, 28 * IO_TLB_SIZE, 'to-device');
      expect(mapOk(q, dev(), 0x200000n, 8 * IO_TLB_SIZE, 'to-device')).toBe(
        physAddr(POOL_START + 28n * 2048n),
      );
    });
  }

  it('newest: alignment larger than a slot pads with whole slots and frees them on unmap', () => {
    const { p } = pool('newest');
    const tlb = mapOk(p, dev(0xfff), 0x1a34n, 5000, 'to-device', { allocAlignMask: 0xfff });
    expect(tlb & 0xfffn).toBe(0xa34n);
    // ALIGN(5000 + 0xa34, 4096) = 8192 bytes = 4 slots, the first a padding slot.
    expect(swiotlbUsed(p)).toBe(4);
    expect((tlb - POOL_START) >> 11n).toBe(1n);
    swiotlbTblUnmapSingle(p, dev(0xfff), tlb, bytes(5000), 'to-device');
    expect(swiotlbUsed(p)).toBe(0);
    expect(Array.from(p.list.slice(0, 4))).toEqual([128, 127, 126, 125]);
  });

  it('6.1: a mapping larger than its allocation is refused with "Invalid sizes"', () => {
    const { p, log } = pool('6.1');
    const r = swiotlbTblMapSingle(p, dev(), physAddr(0x1000n), bytes(4096), {
      dir: 'to-device',
      cpu: 0,
      allocSize: bytes(2048),
    });
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(log.lines.map((l) => l.text)).toEqual([
      'nvme 0000:01:00.0: Invalid sizes (mapping: 4096 bytes, alloc: 2048 bytes)',
    ]);
  });
});

describe('a full pool', () => {
  for (const version of ['6.1', 'newest'] as const) {
    it(`${version}: fails with the kernel's message (unless DMA_ATTR_NO_WARN) and frees on unmap`, () => {
      const { p, log } = pool(version, bytes(MiB)); // 512 slots
      const maps = [0, 1, 2, 3].map((i) => mapOk(p, dev(), BigInt(i) << 20n, 256 * 1024, 'to-device'));
      expect(swiotlbUsed(p)).toBe(512);
      const r = swiotlbTblMapSingle(p, dev(), physAddr(0x900000n), bytes(4096), { dir: 'to-device', cpu: 0 });
      expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
      expect(log.lines.at(-1)?.text).toBe(
        'nvme 0000:01:00.0: swiotlb buffer is full (sz: 4096 bytes), total 512 (slots), used 512 (slots)',
      );
      const n = log.lines.length;
      const quiet = swiotlbTblMapSingle(p, dev(), physAddr(0x900000n), bytes(4096), {
        dir: 'to-device',
        cpu: 0,
        attrs: DMA_ATTR_NO_WARN,
      });
      expect(quiet.ok).toBe(false);
      expect(log.lines.length).toBe(n);
      swiotlbTblUnmapSingle(p, dev(), maps[2]!, bytes(256 * 1024), 'to-device');
      expect(mapOk(p, dev(), 0x900000n, 4096, 'to-device')).toBe(maps[2]);
    });
  }

  it('refuses more than one segment (256 KiB) in one mapping', () => {
    const { p } = pool();
    const r = swiotlbTblMapSingle(p, dev(), physAddr(0n), bytes(256 * 1024 + 1), {
      dir: 'to-device',
      cpu: 0,
    });
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
  });
});

describe('swiotlb_max_mapping_size', () => {
  it('is one segment less the slot-rounded min_align_mask', () => {
    expect(swiotlbMaxMappingSize(dev())).toBe(262144n);
    expect(swiotlbMaxMappingSize(dev(0xfff))).toBe(262144n - 4096n);
    expect(swiotlbMaxMappingSize(dev(0x7ff))).toBe(262144n - 2048n);
  });
});

describe('properties', () => {
  const opArb = fc.array(
    fc.record({
      unmapPick: fc.option(fc.nat(), { freq: 3 }),
      size: fc.integer({ min: 1, max: 70_000 }),
      orig: fc.integer({ min: 0, max: 0xfffff }),
      minAlign: fc.constantFrom(0, 0x7ff, 0xfff),
      cpu: fc.integer({ min: 0, max: 3 }),
    }),
    { maxLength: 60 },
  );

  for (const version of ['6.1', 'newest'] as const) {
    it(`${version}: live mappings never share a slot, data round-trips, and unmapping everything restores the pool`, () => {
      fc.assert(
        fc.property(opArb, (ops) => {
          const memory = new SparseMemory();
          const p = swiotlbInitPool({
            version,
            start: POOL_START,
            sizeBytes: bytes(2n * MiB),
            nrCpus: 4,
            memory,
          });
          const pristine = Array.from(p.list);
          const live: { tlb: PhysAddr; size: number; d: SwiotlbDevice; orig: bigint; seed: number }[] = [];
          let seed = 0;
          for (const op of ops) {
            if (op.unmapPick !== null && live.length > 0) {
              const m = live.splice(op.unmapPick % live.length, 1)[0]!;
              memory.write(m.tlb, pattern(Math.min(m.size, 64), m.seed + 100));
              swiotlbTblUnmapSingle(p, m.d, m.tlb, bytes(m.size), 'bidirectional');
              expect(memory.read(physAddr(m.orig), Math.min(m.size, 64))).toEqual(
                pattern(Math.min(m.size, 64), m.seed + 100),
              );
              continue;
            }
            const d = dev(op.minAlign);
            const orig = BigInt(op.orig) << 8n;
            seed++;
            memory.write(physAddr(orig), pattern(Math.min(op.size, 64), seed));
            const r = swiotlbTblMapSingle(p, d, physAddr(orig), bytes(op.size), {
              dir: 'bidirectional',
              cpu: op.cpu,
            });
            if (!r.ok) continue;
            expect(memory.read(r.value, Math.min(op.size, 64))).toEqual(pattern(Math.min(op.size, 64), seed));
            expect(r.value & BigInt(op.minAlign)).toBe(orig & BigInt(op.minAlign));
            live.push({ tlb: r.value, size: op.size, d, orig, seed });
          }
          // No two live mappings overlap (their bytes, as bounce ranges).
          const spans = live
            .map((m) => [m.tlb, m.tlb + BigInt(m.size)] as const)
            .sort((a, b) => (a[0] < b[0] ? -1 : 1));
          for (let i = 1; i < spans.length; i++) expect(spans[i]![0] >= spans[i - 1]![1]).toBe(true);
          for (const m of live) swiotlbTblUnmapSingle(p, m.d, m.tlb, bytes(m.size), 'to-device');
          expect(swiotlbUsed(p)).toBe(0);
          expect(Array.from(p.list)).toEqual(pristine);
        }),
        { numRuns: 80 },
      );
    });
  }
});
