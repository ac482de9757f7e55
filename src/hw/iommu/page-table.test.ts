import { describe, expect, it } from 'vitest';
import { IoPageTable, PARTIAL_UNMAP_WARNING, SZ_1G, SZ_2M, SZ_4K } from './page-table.js';

const RW = { read: true, write: true };
const RO = { read: true, write: false };

describe('IoPageTable map / walk / unmap', () => {
  it('maps a 4 KiB page at level 3: four entries read per walk', () => {
    const pt = new IoPageTable();
    const r = pt.mapPages(0x1234_5000n, 0x8_0000_3000n, SZ_4K, 1, RW);
    expect(r).toEqual({ mappedBytes: SZ_4K, errno: null, warning: null });
    expect(pt.iovaToPhys(0x1234_5abcn)).toBe(0x8_0000_3abcn);
    const w = pt.walk(0x1234_5abc);
    expect(w).toMatchObject({
      present: true,
      levelsTouched: 4,
      level: 3,
      pageShift: 12,
      read: true,
      write: true,
    });
    expect(w.iovaBase).toBe(0x1234_5000);
    expect(w.physBase).toBe(0x8_0000_3000);
    expect(pt.iovaToPhys(0x1234_6000n)).toBe(0n);
  });

  it('maps a 2 MiB block at level 2 and a 1 GiB block at level 1', () => {
    const pt = new IoPageTable();
    expect(pt.mapPages(0x4020_0000n, 0x1_0000_0000n, SZ_2M, 1, RW).errno).toBeNull();
    expect(pt.mapPages(0x80_0000_0000n, 0x40_0000_0000n, SZ_1G, 1, RO).errno).toBeNull();
    expect(pt.walk(0x4030_0000)).toMatchObject({ present: true, levelsTouched: 3, pageShift: 21 });
    expect(pt.iovaToPhys(0x4031_2345n)).toBe(0x1_0011_2345n);
    expect(pt.walk(0x80_1234_5678)).toMatchObject({
      present: true,
      levelsTouched: 2,
      pageShift: 30,
      write: false,
    });
    expect(pt.iovaToPhys(0x80_3fff_ffffn)).toBe(0x40_3fff_ffffn);
    expect(pt.unmapPages(0x4020_0000n, SZ_2M, 1)).toEqual({ unmappedBytes: SZ_2M, pages: 1, warning: null });
    expect(pt.unmapPages(0x80_0000_0000n, SZ_1G, 1).unmappedBytes).toBe(SZ_1G);
    expect(pt.walk(0x4030_0000).present).toBe(false);
    expect(pt.walk(0x80_1234_5678).present).toBe(false);
  });

  it('allocates tables lazily and counts the levels a failed walk read', () => {
    const pt = new IoPageTable();
    expect(pt.tablesLive).toBe(1);
    expect(pt.walk(0x1000)).toMatchObject({ present: false, levelsTouched: 1 });
    pt.mapPages(0x1000n, 0x1000n, SZ_4K, 1, RW);
    expect(pt.tablesLive).toBe(4);
    expect(pt.walk(0x3000)).toMatchObject({ present: false, levelsTouched: 4 });
    expect(pt.walk(0x4000_0000)).toMatchObject({ present: false, levelsTouched: 2 });
  });

  it('maps no further than the end of one table per call', () => {
    const pt = new IoPageTable();
    // 510th slot of the level-3 table: only 2 of the 4 pages fit in this call.
    const r = pt.mapPages(510n * SZ_4K, 0n, SZ_4K, 4, RW);
    expect(r.mappedBytes).toBe(2n * SZ_4K);
    expect(pt.iovaToPhys(511n * SZ_4K)).toBe(SZ_4K);
    expect(pt.iovaToPhys(512n * SZ_4K)).toBe(0n);
  });

  it('refuses a leaf over a leaf, and a page inside a block, with EEXIST', () => {
    const pt = new IoPageTable();
    pt.mapPages(0x20_0000n, 0x20_0000n, SZ_2M, 1, RW);
    expect(pt.mapPages(0x20_0000n, 0x60_0000n, SZ_2M, 1, RW).errno).toBe('EEXIST');
    expect(pt.mapPages(0x21_0000n, 0x1000n, SZ_4K, 1, RW).errno).toBe('EEXIST');
    pt.mapPages(0x1000n, 0x1000n, SZ_4K, 1, RW);
    const again = pt.mapPages(0x0n, 0x9000n, SZ_4K, 2, RW);
    expect(again).toMatchObject({ errno: 'EEXIST', mappedBytes: 0n });
    // Nothing of the refused batch was written.
    expect(pt.iovaToPhys(0x0n)).toBe(0n);
  });

  it('checks sizes, ranges and permissions as arm_lpae_map_pages does', () => {
    const pt = new IoPageTable({ oas: 40 });
    expect(pt.mapPages(0n, 0n, 0x3000n, 1, RW).errno).toBe('EINVAL');
    expect(pt.mapPages(1n << 48n, 0n, SZ_4K, 1, RW).errno).toBe('ERANGE');
    expect(pt.mapPages(0n, 1n << 40n, SZ_4K, 1, RW).errno).toBe('ERANGE');
    expect(pt.mapPages(0n, 0n, SZ_4K, 1, { read: false, write: false }).errno).toBe('EINVAL');
    expect(pt.iovaToPhys(0n)).toBe(0n);
  });

  it('refuses to unmap part of a block and leaves it mapped', () => {
    const pt = new IoPageTable();
    pt.mapPages(0x20_0000n, 0x40_0000n, SZ_2M, 1, RW);
    expect(pt.unmapPages(0x20_0000n, SZ_4K, 1)).toEqual({
      unmappedBytes: 0n,
      pages: 0,
      warning: PARTIAL_UNMAP_WARNING,
    });
    expect(pt.iovaToPhys(0x20_0000n)).toBe(0x40_0000n);
  });

  it('stops at a hole and returns 0 for nothing mapped', () => {
    const pt = new IoPageTable();
    pt.mapPages(0x0n, 0x0n, SZ_4K, 1, RW);
    pt.mapPages(0x2000n, 0x2000n, SZ_4K, 1, RW);
    expect(pt.unmapPages(0x0n, SZ_4K, 3)).toMatchObject({ unmappedBytes: SZ_4K, pages: 1 });
    expect(pt.iovaToPhys(0x2000n)).toBe(0x2000n);
    expect(pt.unmapPages(0x1000n, SZ_4K, 1).unmappedBytes).toBe(0n);
    expect(pt.unmapPages(0x4000_0000n, SZ_2M, 1).unmappedBytes).toBe(0n);
  });

  it('tears down a table under a block-sized unmap or map, flushing walks for its range', () => {
    const flushed: [number, number][] = [];
    const pt = new IoPageTable({ onFlushWalk: (iova, size) => flushed.push([iova, size]) });
    pt.mapPages(0x20_0000n, 0x10_0000_0000n, SZ_4K, 512, RW);
    expect(pt.tablesLive).toBe(4);
    expect(pt.unmapPages(0x20_0000n, SZ_2M, 1)).toMatchObject({ unmappedBytes: SZ_2M, pages: 1 });
    expect(pt.tablesLive).toBe(3);
    expect(flushed).toEqual([[0x20_0000, 0x20_0000]]);
    expect(pt.iovaToPhys(0x20_1000n)).toBe(0n);
    // An empty table left by 4 KiB unmaps is replaced when a block is mapped over it.
    pt.mapPages(0x40_0000n, 0x0n, SZ_4K, 1, RW);
    pt.unmapPages(0x40_0000n, SZ_4K, 1);
    expect(pt.mapPages(0x40_0000n, 0x80_0000n, SZ_2M, 1, RW).errno).toBeNull();
    expect(pt.walk(0x40_0000)).toMatchObject({ present: true, pageShift: 21 });
    expect(flushed).toHaveLength(2);
  });

  it('keeps high output address bits and the no-exec bit apart', () => {
    const pt = new IoPageTable();
    const pa = 0xffff_ffff_f000n;
    pt.mapPages(0xffff_ffff_f000n, pa, SZ_4K, 1, { read: false, write: true, noexec: true });
    expect(pt.iovaToPhys(0xffff_ffff_f123n)).toBe(0xffff_ffff_f123n);
    expect(pt.walk(0xffff_ffff_f000)).toMatchObject({ read: false, write: true });
  });
});
