// The entry store of the DMA debug ledger: `struct dma_debug_entry` as parallel typed arrays, the
// 16384-bucket hash keyed by DMA address bits 13..26 (`hash_fn()`), and the best-fit bucket search
// of kernel/dma/debug.c (`__hash_bucket_find()` with `exact_match()` / `containing_match()`).
//
//   dma_entry_hash[(dev_addr >> 13) & 16383]:  head -> e7 -> e2 -> e9 (list_add_tail order)
//   each entry: dev, dev_addr, size, type, direction, sg_call_ents, sg_mapped_ents, paddr,
//               map_err_type, attrs, plus what the model adds: the map call, its time, and who owns
//               the memory now (CPU or device) for the "CPU touched device memory" check.

export const HASH_SIZE = 16384;
export const HASH_FN_SHIFT = 13n;
/** `PREALLOC_DMA_DEBUG_ENTRIES`. */
export const PREALLOC_DMA_DEBUG_ENTRIES = 1 << 16;
/** `DMA_DEBUG_DYNAMIC_ENTRIES`: PAGE_SIZE / sizeof(struct dma_debug_entry) (128 bytes, cacheline aligned). */
export const DMA_DEBUG_DYNAMIC_ENTRIES = 4096 / 128;

/** The entry types (`dma_debug_single` ...); names per profile are in debug.ts. */
export const T_SINGLE = 0;
export const T_SG = 1;
export const T_COHERENT = 2;
export const T_RESOURCE = 3;
export const T_PHY = 4;
export const T_NONCOHERENT = 5;

/** `enum map_err_types`. */
export const MAP_ERR_CHECK_NOT_APPLICABLE = 0;
export const MAP_ERR_NOT_CHECKED = 1;
export const MAP_ERR_CHECKED = 2;

export const OWNER_CPU = 0;
export const OWNER_DEVICE = 1;

/** A reference entry built by a check (`struct dma_debug_entry ref` on the kernel's stack). */
export interface DebugRef {
  dev: number;
  devAddr: bigint;
  size: bigint;
  type: number;
  dir: number;
  sgCallEnts: number;
}

export const hashFn = (devAddr: bigint): number => Number((devAddr >> HASH_FN_SHIFT) & BigInt(HASH_SIZE - 1));

/** Parallel arrays of entries with free-slot reuse and per-bucket doubly linked lists. */
export class DebugEntries {
  cap = 0;
  dev = new Int32Array(0);
  devAddr = new BigUint64Array(0);
  size = new BigUint64Array(0);
  paddr = new BigUint64Array(0);
  type = new Uint8Array(0);
  dir = new Uint8Array(0);
  mapErr = new Uint8Array(0);
  owner = new Uint8Array(0);
  call = new Uint8Array(0);
  attrs = new Int32Array(0);
  sgCallEnts = new Int32Array(0);
  sgMappedEnts = new Int32Array(0);
  /** First entry of the dma_map_sg call this entry belongs to (itself for other types). */
  group = new Int32Array(0);
  timeNs = new Float64Array(0);
  next = new Int32Array(0);
  prev = new Int32Array(0);
  bucket = new Int32Array(0);
  readonly heads = new Int32Array(HASH_SIZE).fill(-1);
  readonly tails = new Int32Array(HASH_SIZE).fill(-1);
  private freeSlots: number[] = [];
  private hiWater = 0;
  /** Entries in use. */
  active = 0;

  private grow(): void {
    const cap = Math.max(256, this.cap * 2);
    const g = <T extends { set(a: ArrayLike<number | bigint>): void }>(old: T, mk: (n: number) => T): T => {
      const a = mk(cap);
      a.set(old as unknown as ArrayLike<number | bigint>);
      return a;
    };
    this.dev = g(this.dev, (n) => new Int32Array(n));
    this.devAddr = g(this.devAddr, (n) => new BigUint64Array(n));
    this.size = g(this.size, (n) => new BigUint64Array(n));
    this.paddr = g(this.paddr, (n) => new BigUint64Array(n));
    this.type = g(this.type, (n) => new Uint8Array(n));
    this.dir = g(this.dir, (n) => new Uint8Array(n));
    this.mapErr = g(this.mapErr, (n) => new Uint8Array(n));
    this.owner = g(this.owner, (n) => new Uint8Array(n));
    this.call = g(this.call, (n) => new Uint8Array(n));
    this.attrs = g(this.attrs, (n) => new Int32Array(n));
    this.sgCallEnts = g(this.sgCallEnts, (n) => new Int32Array(n));
    this.sgMappedEnts = g(this.sgMappedEnts, (n) => new Int32Array(n));
    this.group = g(this.group, (n) => new Int32Array(n));
    this.timeNs = g(this.timeNs, (n) => new Float64Array(n));
    this.next = g(this.next, (n) => new Int32Array(n));
    this.prev = g(this.prev, (n) => new Int32Array(n));
    this.bucket = g(this.bucket, (n) => new Int32Array(n).fill(-1));
    this.cap = cap;
  }

  /** A cleared slot (`dma_entry_alloc()` + memset). */
  alloc(): number {
    let e = this.freeSlots.pop();
    if (e === undefined) {
      if (this.hiWater === this.cap) this.grow();
      e = this.hiWater++;
    }
    this.dev[e] = 0;
    this.devAddr[e] = 0n;
    this.size[e] = 0n;
    this.paddr[e] = 0n;
    this.type[e] = 0;
    this.dir[e] = 0;
    this.mapErr[e] = MAP_ERR_CHECK_NOT_APPLICABLE;
    this.owner[e] = OWNER_DEVICE;
    this.call[e] = 0;
    this.attrs[e] = 0;
    this.sgCallEnts[e] = 0;
    this.sgMappedEnts[e] = 0;
    this.group[e] = e;
    this.timeNs[e] = 0;
    this.active++;
    return e;
  }

  /** `hash_bucket_add()`: append to the bucket of the entry's DMA address. */
  add(e: number): void {
    const b = hashFn(this.devAddr[e]!);
    this.bucket[e] = b;
    this.next[e] = -1;
    this.prev[e] = this.tails[b]!;
    if (this.tails[b]! >= 0) this.next[this.tails[b]!] = e;
    else this.heads[b] = e;
    this.tails[b] = e;
  }

  /** `hash_bucket_del()` + `dma_entry_free()`. */
  remove(e: number): void {
    const b = this.bucket[e]!;
    if (b < 0) throw new Error('BUG: freeing a dma-debug entry that is not hashed');
    const p = this.prev[e]!;
    const n = this.next[e]!;
    if (p >= 0) this.next[p] = n;
    else this.heads[b] = n;
    if (n >= 0) this.prev[n] = p;
    else this.tails[b] = p;
    this.bucket[e] = -1;
    this.freeSlots.push(e);
    this.active--;
  }

  private exact(ref: DebugRef, e: number): boolean {
    return this.devAddr[e] === ref.devAddr && this.dev[e] === ref.dev;
  }

  private containing(ref: DebugRef, e: number): boolean {
    if (this.dev[e] !== ref.dev) return false;
    const a = this.devAddr[e]!;
    return a <= ref.devAddr && a + this.size[e]! >= ref.devAddr + ref.size;
  }

  /** `__hash_bucket_find()`: the perfect fit, else the only match, else none. */
  findIn(b: number, ref: DebugRef, containing: boolean): number {
    let matches = 0;
    let best = -1;
    let lastLvl = -1;
    for (let e = this.heads[b]!; e >= 0; e = this.next[e]!) {
      if (!(containing ? this.containing(ref, e) : this.exact(ref, e))) continue;
      matches++;
      let lvl = 0;
      if (this.size[e] === ref.size) lvl++;
      if (this.type[e] === ref.type) lvl++;
      if (this.dir[e] === ref.dir) lvl++;
      if (this.sgCallEnts[e] === ref.sgCallEnts) lvl++;
      if (lvl === 4) return e;
      if (lvl > lastLvl) {
        lastLvl = lvl;
        best = e;
      }
    }
    return matches === 1 ? best : -1;
  }

  /** `bucket_find_exact()`. */
  findExact(ref: DebugRef): number {
    return this.findIn(hashFn(ref.devAddr), ref, false);
  }

  /** `bucket_find_contain()`: walk back one bucket at a time, at most `(dev_addr >> 13) + 1` buckets. */
  findContain(ref: DebugRef): number {
    const limit = Math.min(HASH_SIZE, Number((ref.devAddr >> HASH_FN_SHIFT) + 1n));
    let addr = ref.devAddr;
    for (let i = 0; i < limit; i++) {
      const e = this.findIn(hashFn(addr), ref, true);
      if (e >= 0) return e;
      addr = BigInt.asUintN(64, addr - (1n << HASH_FN_SHIFT));
    }
    return -1;
  }

  /** Entries in hash order (bucket 0 first, list order inside a bucket), as the kernel walks them. */
  *inHashOrder(): Generator<number> {
    for (let b = 0; b < HASH_SIZE; b++) for (let e = this.heads[b]!; e >= 0; e = this.next[e]!) yield e;
  }
}
