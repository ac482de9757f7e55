// The pfn -> dev_pagemap index of mm/memremap.c (`pgmap_array`, an xarray keyed by pfn), built for the
// DMA hot path: "which provider owns this page?" must stay fast with many providers (seed 001).
//
// memremap only accepts 2 MiB-aligned ranges (one "subsection", 512 pfns), so a two-level radix over
// subsections answers in two array loads, like the kernel's xarray:
//
//   pfn --/512--> subsection --/512--> top (Map: one leaf per GiB) --%512--> leaf[slot] = index + 1
//                                                                           0: no pagemap here
//                                                                          -1: shared by two spans
//
// A slot shared by two spans only happens for unaligned spans (tests, not memremap); it falls back
// to a binary search over the parallel sorted arrays of first and last pfn. The pagemap of the
// previous hit is tried first (consecutive pages of one buffer nearly always share it). Pfns are
// JavaScript numbers (exact below 2^53), so a lookup allocates nothing. Insert and remove rebuild
// the index (rare: driver bind and unbind).

/** What the table needs of a pagemap. */
export interface PfnSpan {
  readonly firstPfn: number;
  readonly lastPfn: number;
}

const SUB = 512; // pfns per subsection (2 MiB)
const LEAF_PFNS = SUB * SUB; // pfns per leaf (1 GiB)

export class PgmapTable<T extends PfnSpan> {
  private first = new Float64Array(0);
  private last = new Float64Array(0);
  private items: T[] = [];
  private top = new Map<number, Int32Array>();
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
    const leaf = this.top.get(Math.floor(pfn / LEAF_PFNS));
    if (leaf === undefined) return null;
    const e = leaf[Math.floor(pfn / SUB) % SUB]!;
    if (e === 0) return null;
    const i = e > 0 ? e - 1 : this.search(pfn);
    if (i < 0 || pfn < this.first[i]! || pfn > this.last[i]!) return null;
    this.hit = i;
    return this.items[i]!;
  }

  /** Largest index whose first pfn is <= pfn (-1 if none): the fallback for shared subsections. */
  private search(pfn: number): number {
    const first = this.first;
    let lo = 0;
    let hi = first.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (first[mid]! <= pfn) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi;
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
    this.top = new Map();
    this.items.forEach((p, i) => {
      const lastSub = Math.floor(p.lastPfn / SUB);
      for (let sub = Math.floor(p.firstPfn / SUB); sub <= lastSub; sub++) {
        const key = Math.floor(sub / SUB);
        let leaf = this.top.get(key);
        if (leaf === undefined) {
          leaf = new Int32Array(SUB);
          this.top.set(key, leaf);
        }
        const slot = sub % SUB;
        leaf[slot] = leaf[slot] === 0 ? i + 1 : -1;
      }
    });
  }
}
