// The pfn -> dev_pagemap index of mm/memremap.c (`pgmap_array`, an xarray keyed by pfn), built for the
// DMA hot path: "which provider owns this page?" must stay fast with many providers (seed 001).
//
// Pagemaps never overlap (memremap refuses it), so they are kept as parallel sorted arrays of first and
// last pfn. A lookup first tries the pagemap of the previous hit (consecutive pages of one buffer
// nearly always share it), then binary-searches the starts:
//
//   first: [ 0x100000 | 0x180000 | 0x3800000 | ... ]   lookup(pfn): largest i with first[i] <= pfn,
//   last:  [ 0x17ffff | 0x1bffff | 0x383ffff | ... ]                then hit iff pfn <= last[i]
//
// Pfns are JavaScript numbers (exact below 2^53, i.e. up to 2^65 bytes), so a lookup allocates
// nothing. Inserting or removing a pagemap rebuilds the arrays (rare: driver bind and unbind).

/** What the table needs of a pagemap. */
export interface PfnSpan {
  readonly firstPfn: number;
  readonly lastPfn: number;
}

export class PgmapTable<T extends PfnSpan> {
  private first = new Float64Array(0);
  private last = new Float64Array(0);
  private items: T[] = [];
  private hit = -1;

  /** Number of pagemaps. */
  get size(): number {
    return this.items.length;
  }

  /** The pagemaps in pfn order. */
  all(): readonly T[] {
    return this.items;
  }

  /** The pagemap holding `pfn`, or null. Allocation-free; the DMA layer's hot path. */
  lookup(pfn: number): T | null {
    const h = this.hit;
    if (h >= 0 && pfn >= this.first[h]! && pfn <= this.last[h]!) return this.items[h]!;
    const first = this.first;
    let lo = 0;
    let hi = first.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (first[mid]! <= pfn) lo = mid + 1;
      else hi = mid - 1;
    }
    // hi is now the largest index whose first pfn is <= pfn.
    if (hi >= 0 && pfn <= this.last[hi]!) {
      this.hit = hi;
      return this.items[hi]!;
    }
    return null;
  }

  /** Pagemaps with any pfn in [firstPfn, lastPfn]. */
  overlapping(firstPfn: number, lastPfn: number): T[] {
    return this.items.filter((p) => p.firstPfn <= lastPfn && p.lastPfn >= firstPfn);
  }

  /** Add a pagemap. @throws when it overlaps one already present (memremap must refuse that first). */
  insert(p: T): void {
    if (p.lastPfn < p.firstPfn) throw new Error('BUG: pgmap with an empty pfn range');
    if (this.overlapping(p.firstPfn, p.lastPfn).length > 0)
      throw new Error('BUG: overlapping pgmaps in pgmap_array');
    let at = 0;
    while (at < this.items.length && this.items[at]!.firstPfn < p.firstPfn) at++;
    this.items.splice(at, 0, p);
    this.rebuild();
  }

  /** Remove a pagemap. @returns false when it was not in the table. */
  remove(p: T): boolean {
    const at = this.items.indexOf(p);
    if (at < 0) return false;
    this.items.splice(at, 1);
    this.rebuild();
    return true;
  }

  private rebuild(): void {
    this.first = Float64Array.from(this.items, (p) => p.firstPfn);
    this.last = Float64Array.from(this.items, (p) => p.lastPfn);
    this.hit = -1;
  }
}
