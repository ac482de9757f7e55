import { describe, expect, it } from 'vitest';
import { bytes, PAGE_SIZE, physAddr } from '../../hw/addr.js';
import { createKernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import type { PgmapOf } from './phyr.js';
import {
  forEachSgtableSg,
  newSgAppendTable,
  newSgTable,
  SG_BUS_ADDRESS_HELPER,
  SG_DMA_BUS_ADDRESS,
  SG_DMA_SWIOTLB,
  SG_MAX_SINGLE_ALLOC,
  type SgOptions,
  sgAllocTable,
  sgDmaIsBusAddress,
  sgDmaIsSwiotlb,
  sgDmaMarkBusAddress,
  sgDmaMarkSwiotlb,
  sgDmaUnmarkBusAddress,
  sgIsDmaBusAddress,
  sgNext,
  sgPhys,
  UINT_MAX,
} from './scatterlist.js';
import {
  sgAllocAppendTableFromPages,
  sgAllocTableFromPages,
  sgAllocTableFromPagesSegment,
} from './scatterlist-pages.js';

// tools/testing/scatterlist/main.c: pfn value k is page pointer (1 + k) * PAGE_SIZE, so pfn k + 1.
const pfn = (...ks: number[]): number[] => ks.map((k) => k + 1);
const sgmax = UINT_MAX;
const P = PAGE_SIZE;

interface Case {
  ret: 0 | 'EINVAL';
  pfn: number[];
  app: number[] | null;
  size: number;
  maxSeg: number;
  expected: number;
}

// The 22 cases of tools/testing/scatterlist/main.c (identical in 6.1 and mainline), in order.
const CASES: Case[] = [
  { ret: 'EINVAL', pfn: pfn(0), app: null, size: P, maxSeg: 0, expected: 1 },
  { ret: 0, pfn: pfn(0), app: null, size: P, maxSeg: P + 1, expected: 1 },
  { ret: 0, pfn: pfn(0), app: null, size: P, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(0), app: null, size: 1, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(0, 1), app: null, size: 2 * P, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(1, 0), app: null, size: 2 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(0, 1, 2), app: null, size: 3 * P, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(0, 1, 2), app: null, size: 3 * P, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(0, 1, 2), app: pfn(3, 4, 5), size: 3 * P, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(0, 1, 2), app: pfn(4, 5, 6), size: 3 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(0, 2, 1), app: null, size: 3 * P, maxSeg: sgmax, expected: 3 },
  { ret: 0, pfn: pfn(0, 1, 3), app: null, size: 3 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(1, 2, 4), app: null, size: 3 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(1, 3, 4), app: null, size: 3 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(0, 1, 3, 4), app: null, size: 4 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(0, 1, 3, 4, 5), app: null, size: 5 * P, maxSeg: sgmax, expected: 2 },
  { ret: 0, pfn: pfn(0, 1, 3, 4, 6), app: null, size: 5 * P, maxSeg: sgmax, expected: 3 },
  { ret: 0, pfn: pfn(0, 1, 2, 3, 4), app: null, size: 5 * P, maxSeg: sgmax, expected: 1 },
  { ret: 0, pfn: pfn(0, 1, 2, 3, 4), app: null, size: 5 * P, maxSeg: 2 * P, expected: 3 },
  { ret: 0, pfn: pfn(0, 1, 2, 3, 4, 5), app: null, size: 6 * P, maxSeg: 2 * P, expected: 3 },
  { ret: 0, pfn: pfn(0, 2, 3, 4, 5, 6), app: null, size: 6 * P, maxSeg: 2 * P, expected: 4 },
  {
    ret: 0,
    pfn: pfn(0, 1, 3, 4, 5, 6),
    app: pfn(7, 8, 9, 10, 11, 12),
    size: 6 * P,
    maxSeg: 12 * P,
    expected: 2,
  },
];

const opts = (version: KernelVersion, extra: Partial<SgOptions> = {}): SgOptions => ({ version, ...extra });
const lengths = (sgt: ReturnType<typeof newSgTable>) => [...forEachSgtableSg(sgt)].map((sg) => sg.length);

describe('tools/testing/scatterlist table', () => {
  it('has exactly 22 cases', () => expect(CASES.length).toBe(22));

  for (const version of ['6.1', 'newest'] as const) {
    CASES.forEach((c, i) => {
      it(`${version} case ${i + 1}: pfns ${c.pfn.map((p) => p - 1).join(',')}${c.app ? ` + ${c.app.map((p) => p - 1).join(',')}` : ''} -> ${c.ret === 0 ? `${c.expected} nents` : c.ret}`, () => {
        const o = opts(version);
        if (c.app) {
          const t = newSgAppendTable();
          const r1 = sgAllocAppendTableFromPages(t, c.pfn, 0, bytes(c.size), c.maxSeg, c.pfn.length, o);
          expect(r1.ok ? 0 : r1.errno).toBe(c.ret);
          if (c.ret !== 0) return;
          const r2 = sgAllocAppendTableFromPages(t, c.app, 0, bytes(c.size), c.maxSeg, 0, o);
          expect(r2.ok).toBe(true);
          expect(t.sgt.nents).toBe(c.expected);
        } else {
          const sgt = newSgTable();
          const r = sgAllocTableFromPagesSegment(sgt, c.pfn, 0, bytes(c.size), c.maxSeg, o);
          expect(r.ok ? 0 : r.errno).toBe(c.ret);
          if (c.ret !== 0) return;
          expect(sgt.nents).toBe(c.expected);
          expect(sgt.origNents).toBe(c.expected);
        }
      });
    });
  }

  it('case 2 rounds max_segment down to a page; case 4 clips the entry to size', () => {
    const sgt = newSgTable();
    expect(sgAllocTableFromPagesSegment(sgt, pfn(0, 1), 0, bytes(2 * P), P + 1, opts('newest')).ok).toBe(
      true,
    );
    expect(lengths(sgt)).toEqual([P, P]);
    const one = newSgTable();
    expect(sgAllocTableFromPagesSegment(one, pfn(0), 0, bytes(1), sgmax, opts('newest')).ok).toBe(true);
    expect(lengths(one)).toEqual([1]);
  });

  it('case 19 splits [0,1],[2,3],[4]; case 22 grows the appended entry past size to 40960 bytes', () => {
    const sgt = newSgTable();
    sgAllocTableFromPagesSegment(sgt, pfn(0, 1, 2, 3, 4), 0, bytes(5 * P), 2 * P, opts('newest'));
    expect([...forEachSgtableSg(sgt)].map((sg) => [sg.pfn, sg.length])).toEqual([
      [1, 2 * P],
      [3, 2 * P],
      [5, P],
    ]);
    const t = newSgAppendTable();
    sgAllocAppendTableFromPages(t, pfn(0, 1, 3, 4, 5, 6), 0, bytes(6 * P), 12 * P, 6, opts('newest'));
    sgAllocAppendTableFromPages(t, pfn(7, 8, 9, 10, 11, 12), 0, bytes(6 * P), 12 * P, 0, opts('newest'));
    expect(lengths(t.sgt)).toEqual([2 * P, 40960]);
    expect(t.prv?.end).toBe(true);
  });

  it('the WARN_ON of the -EINVAL case is printed', () => {
    const log = createKernelLog();
    const r = sgAllocTableFromPagesSegment(newSgTable(), pfn(0), 0, bytes(P), 0, opts('6.1', { log }));
    expect(r.ok).toBe(false);
    expect(log.lines.map((l) => l.text)).toEqual([
      'WARNING: lib/scatterlist.c: max_segment < PAGE_SIZE in sg_alloc_append_table_from_pages',
    ]);
  });
});

describe('zone-device merge rule per profile', () => {
  // pfns 10..19 are pgmap 7 (say a P2P BAR), everything else RAM.
  const pgmapOf: PgmapOf = (p) => (p >> 12n >= 10n && p >> 12n < 20n ? 7 : -1);
  const pages = [8, 9, 10, 11];

  it('6.1 merges across the pgmap boundary (no check before 6.2)', () => {
    const sgt = newSgTable();
    sgAllocTableFromPages(sgt, pages, 0, bytes(4 * P), opts('6.1', { pgmapOf }));
    expect(sgt.nents).toBe(1);
  });

  it('newest splits at the pgmap boundary', () => {
    const sgt = newSgTable();
    sgAllocTableFromPages(sgt, pages, 0, bytes(4 * P), opts('newest', { pgmapOf }));
    expect([...forEachSgtableSg(sgt)].map((sg) => [sg.pfn, sg.length])).toEqual([
      [8, 2 * P],
      [10, 2 * P],
    ]);
  });

  it('the append merge obeys the same rule', () => {
    for (const [version, nents] of [
      ['6.1', 1],
      ['newest', 2],
    ] as const) {
      const t = newSgAppendTable();
      sgAllocAppendTableFromPages(t, [8, 9], 0, bytes(2 * P), sgmax, 2, opts(version, { pgmapOf }));
      sgAllocAppendTableFromPages(t, [10, 11], 0, bytes(2 * P), sgmax, 0, opts(version, { pgmapOf }));
      expect(t.sgt.nents).toBe(nents);
    }
  });
});

describe('chaining, errors and helpers', () => {
  const scattered = (n: number): number[] => Array.from({ length: n }, (_, i) => 2 * i + 1);

  it('chains chunks of SG_MAX_SINGLE_ALLOC with a link slot; total_nents == orig_nents', () => {
    const sgt = newSgTable();
    expect(sgAllocTableFromPages(sgt, scattered(300), 0, bytes(300 * P), opts('newest')).ok).toBe(true);
    expect(sgt.origNents).toBe(300);
    const first = sgt.sgl!;
    expect(first.chunk.length).toBe(SG_MAX_SINGLE_ALLOC);
    expect(first.chunk[SG_MAX_SINGLE_ALLOC - 1]!.chain).not.toBeNull();
    const all = [...forEachSgtableSg(sgt)];
    expect(all.map((sg) => sg.pfn)).toEqual(scattered(300));
    expect(all[299]!.end).toBe(true);
    expect(sgNext(all[299]!)).toBeNull();
  });

  it('an append table keeps room for left_pages and counts chain slots in total_nents', () => {
    const t = newSgAppendTable();
    sgAllocAppendTableFromPages(t, scattered(100), 0, bytes(100 * P), sgmax, 100, opts('newest'));
    expect(t.totalNents).toBe(128);
    sgAllocAppendTableFromPages(
      t,
      scattered(100).map((p) => p + 1000),
      0,
      bytes(100 * P),
      sgmax,
      0,
      opts('newest'),
    );
    expect(t.sgt.nents).toBe(200);
    // 27 entries reuse the first chunk's free slots; the chunk's last slot becomes the link to a new
    // chunk of the 73 still needed: 128 + 73 - 1.
    expect(t.totalNents).toBe(128 + 73 - 1);
    expect(t.sgt.sgl!.chunk[127]!.chain!.length).toBe(73);
  });

  it('ENOMEM restores the previous entry length', () => {
    const t = newSgAppendTable();
    sgAllocAppendTableFromPages(t, [1, 2], 0, bytes(2 * P), sgmax, 1, opts('newest'));
    expect(t.prv!.length).toBe(2 * P);
    // Pages 3 (merges into prv) and 9 (needs a new chunk whose allocation fails).
    const fail = opts('newest', { allocFails: () => true });
    const r = sgAllocAppendTableFromPages(t, [3, 9, 11], 0, bytes(3 * P), sgmax, 0, fail);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(t.prv!.length).toBe(2 * P);
    const fresh = sgAllocTableFromPages(newSgTable(), [1], 0, bytes(P), fail);
    expect(fresh.ok ? 'ok' : fresh.errno).toBe('ENOMEM');
  });

  it('EINVAL for an append with an offset; EOPNOTSUPP for an append without chaining', () => {
    const t = newSgAppendTable();
    sgAllocAppendTableFromPages(t, [1], 0, bytes(P), sgmax, 1, opts('newest'));
    const r = sgAllocAppendTableFromPages(t, [2], 0x10, bytes(P), sgmax, 0, opts('newest'));
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    const r2 = sgAllocAppendTableFromPages(
      t,
      [2],
      0,
      bytes(P),
      sgmax,
      0,
      opts('newest', { archNoSgChain: true }),
    );
    expect(r2.ok ? 'ok' : r2.errno).toBe('EOPNOTSUPP');
  });

  it('the first entry carries the offset; sg_phys adds it', () => {
    const sgt = newSgTable();
    sgAllocTableFromPages(sgt, [5, 6], 0x100, bytes(2 * P - 0x100), opts('newest'));
    const sg = sgt.sgl!;
    expect([sg.offset, sg.length]).toEqual([0x100, 2 * P - 0x100]);
    expect(sgPhys(sg)).toBe(physAddr(5 * P + 0x100));
  });

  it('sg_alloc_table: EINVAL for 0 entries, chained for 200, ENOMEM from the seam', () => {
    const sgt = newSgTable();
    const z = sgAllocTable(sgt, 0, opts('newest'));
    expect(z.ok ? 'ok' : z.errno).toBe('EINVAL');
    expect(sgAllocTable(sgt, 200, opts('newest')).ok).toBe(true);
    expect([sgt.nents, sgt.origNents, [...forEachSgtableSg(sgt)].length]).toEqual([200, 200, 200]);
    const n = sgAllocTable(sgt, 200, opts('newest', { allocFails: (k) => k < 128 }));
    expect(n.ok ? 'ok' : n.errno).toBe('ENOMEM');
    expect(sgt.sgl).toBeNull();
    const nc = sgAllocTable(sgt, 200, opts('newest', { archNoSgChain: true }));
    expect(nc.ok ? 'ok' : nc.errno).toBe('EINVAL');
  });

  it('DMA flag helpers under both names', () => {
    const sgt = newSgTable();
    sgAllocTable(sgt, 1, opts('newest'));
    const sg = sgt.sgl!;
    expect(sgDmaIsBusAddress(sg)).toBe(false);
    sgDmaMarkBusAddress(sg);
    expect([sgDmaIsBusAddress(sg), sgIsDmaBusAddress(sg), sg.dmaFlags]).toEqual([
      true,
      true,
      SG_DMA_BUS_ADDRESS,
    ]);
    sgDmaMarkSwiotlb(sg);
    expect(sgDmaIsSwiotlb(sg)).toBe(true);
    sgDmaUnmarkBusAddress(sg);
    expect(sg.dmaFlags).toBe(SG_DMA_SWIOTLB);
    expect(SG_BUS_ADDRESS_HELPER).toEqual({
      '6.1': 'sg_is_dma_bus_address',
      newest: 'sg_dma_is_bus_address',
    });
  });
});
