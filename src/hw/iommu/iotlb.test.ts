import { describe, expect, it } from 'vitest';
import { Iotlb } from './iotlb.js';

const page = (domainId: number, iovaBase: number, physBase: number, pageShift = 12) => ({
  domainId,
  pageShift,
  iovaBase,
  physBase,
  read: true,
  write: true,
});

describe('Iotlb', () => {
  it('counts misses, fills and hits, and covers a whole 2 MiB entry', () => {
    const t = new Iotlb({ entries: 8 });
    expect(t.lookup(1, 0x20_0000)).toBeNull();
    t.fill(page(1, 0x20_0000, 0x80_0000, 21));
    expect(t.lookup(1, 0x3f_f000)?.physBase).toBe(0x80_0000);
    expect(t.lookup(1, 0x20_0000)).not.toBeNull();
    expect(t.lookup(2, 0x20_0000)).toBeNull();
    expect(t.stats).toMatchObject({ hits: 2, misses: 2, fills: 1, staleHits: 0 });
  });

  it('evicts the least recently used entry of a full set', () => {
    const t = new Iotlb({ entries: 2 });
    t.fill(page(1, 0x1000, 0x1000));
    t.fill(page(1, 0x2000, 0x2000));
    t.lookup(1, 0x1000); // 0x1000 becomes most recent
    t.fill(page(1, 0x3000, 0x3000));
    expect(t.stats.evictions).toBe(1);
    expect(t.lookup(1, 0x2000)).toBeNull();
    expect(t.lookup(1, 0x1000)).not.toBeNull();
    expect(t.size).toBe(2);
  });

  it('set-associative geometry never holds more than `ways` entries per set', () => {
    const t = new Iotlb({ entries: 16, ways: 2 });
    for (let i = 0; i < 200; i++) t.fill(page(1, i * 0x1000, i * 0x1000));
    expect(t.size).toBeLessThanOrEqual(16);
    expect(t.stats.evictions).toBe(200 - t.size);
    expect(() => new Iotlb({ entries: 10, ways: 3 })).toThrow(RangeError);
  });

  it('keeps stale entries until invalidated and counts hits on them', () => {
    const t = new Iotlb({ entries: 64 });
    t.fill(page(1, 0x1000, 0xa000));
    t.fill(page(1, 0x2000, 0xb000));
    expect(t.markStale(1, 0x1000, 0x1000)).toBe(1);
    expect(t.lookup(1, 0x1000)?.stale).toBe(true);
    expect(t.lookup(1, 0x2000)?.stale).toBe(false);
    expect(t.stats.staleHits).toBe(1);
    expect(t.invalidateRange(1, 0x0, 0x2000)).toBe(1);
    expect(t.lookup(1, 0x1000)).toBeNull();
    expect(t.lookup(1, 0x2000)).not.toBeNull();
  });

  it('invalidates by range (probing or scanning), by domain and all', () => {
    const t = new Iotlb({ entries: 4 });
    t.fill(page(1, 0x20_0000, 0, 21));
    t.fill(page(1, 0x40_0000, 0, 21));
    t.fill(page(2, 0x20_0000, 0, 21));
    // A 4 KiB range inside the first block removes the whole block entry.
    expect(t.invalidateRange(1, 0x20_1000, 0x1000)).toBe(1);
    // A huge range takes the scanning path and still spares the other domain.
    expect(t.invalidateRange(1, 0, 2 ** 40)).toBe(1);
    expect(t.lookup(2, 0x20_0000)).not.toBeNull();
    t.fill(page(3, 0x1000, 0));
    expect(t.invalidateDomain(2)).toBe(1);
    expect(t.invalidateAll()).toBe(1);
    expect(t.stats).toMatchObject({ rangeInvalidations: 2, domainInvalidations: 1, globalInvalidations: 1 });
    expect(t.stats.entriesInvalidated).toBe(4);
  });
});
