// The red-black tree of allocated IOVA ranges (`struct rb_root rbroot` of `struct iova_domain`),
// ordered by pfn_lo — lib/rbtree.c's balancing, stored in typed arrays.
//
// Nodes are integer ids into parallel arrays (pfn_lo, pfn_hi, left, right, parent, colour); id 0 is
// the shared nil leaf (CLRS style), so `prev(id) === NIL` is the C `rb_prev() == NULL`. Ids are
// stable while a node is in the tree, which is what lets the domain keep `cached_node` pointers.
// PFNs are doubles: exact for every pfn below 2^53 (any 64-bit address with a granule >= 2 KiB),
// and the anchor's ~0UL is represented by 2^64, which compares above all of them.

export const NIL = 0;

export class IovaRbTree {
  private lo = new Float64Array(64);
  private hi = new Float64Array(64);
  private left = new Int32Array(64);
  private right = new Int32Array(64);
  private parent = new Int32Array(64);
  private red = new Uint8Array(64);
  private nextId = 1;
  private readonly freeIds: number[] = [];
  private rootId = NIL;
  private count = 0;

  /** Nodes in the tree. */
  get size(): number {
    return this.count;
  }

  pfnLo(id: number): number {
    return this.lo[id]!;
  }

  pfnHi(id: number): number {
    return this.hi[id]!;
  }

  /** Change a node's range in place. Precondition: the order of pfn_lo among nodes is unchanged. */
  setRange(id: number, pfnLo: number, pfnHi: number): void {
    this.lo[id] = pfnLo;
    this.hi[id] = pfnHi;
  }

  private newNode(pfnLo: number, pfnHi: number): number {
    let id = this.freeIds.pop();
    if (id === undefined) {
      id = this.nextId++;
      if (id >= this.lo.length) this.grow();
    }
    this.lo[id] = pfnLo;
    this.hi[id] = pfnHi;
    this.left[id] = NIL;
    this.right[id] = NIL;
    this.parent[id] = NIL;
    this.red[id] = 1;
    return id;
  }

  private grow(): void {
    const n = this.lo.length * 2;
    const f = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    const i = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    this.lo = f(this.lo);
    this.hi = f(this.hi);
    this.left = i(this.left);
    this.right = i(this.right);
    this.parent = i(this.parent);
    const r = new Uint8Array(n);
    r.set(this.red);
    this.red = r;
  }

  /** Insert `[pfnLo, pfnHi]`. A duplicate pfn_lo is the kernel's WARN_ON "should not happen": throws. */
  insert(pfnLo: number, pfnHi: number): number {
    let y = NIL;
    let x = this.rootId;
    while (x !== NIL) {
      y = x;
      const k = this.lo[x]!;
      if (pfnLo < k) x = this.left[x]!;
      else if (pfnLo > k) x = this.right[x]!;
      else throw new Error(`BUG: iova_insert_rbtree: pfn_lo ${pfnLo} already in the tree`);
    }
    const z = this.newNode(pfnLo, pfnHi);
    this.parent[z] = y;
    if (y === NIL) this.rootId = z;
    else if (pfnLo < this.lo[y]!) this.left[y] = z;
    else this.right[y] = z;
    this.insertFixup(z);
    this.count++;
    return z;
  }

  private rotateLeft(x: number): void {
    const y = this.right[x]!;
    this.right[x] = this.left[y]!;
    if (this.left[y] !== NIL) this.parent[this.left[y]!] = x;
    this.parent[y] = this.parent[x]!;
    const px = this.parent[x]!;
    if (px === NIL) this.rootId = y;
    else if (x === this.left[px]) this.left[px] = y;
    else this.right[px] = y;
    this.left[y] = x;
    this.parent[x] = y;
  }

  private rotateRight(x: number): void {
    const y = this.left[x]!;
    this.left[x] = this.right[y]!;
    if (this.right[y] !== NIL) this.parent[this.right[y]!] = x;
    this.parent[y] = this.parent[x]!;
    const px = this.parent[x]!;
    if (px === NIL) this.rootId = y;
    else if (x === this.right[px]) this.right[px] = y;
    else this.left[px] = y;
    this.right[y] = x;
    this.parent[x] = y;
  }

  private insertFixup(zIn: number): void {
    let z = zIn;
    while (this.red[this.parent[z]!] === 1) {
      const p = this.parent[z]!;
      const g = this.parent[p]!;
      const leftSide = p === this.left[g];
      const uncle = leftSide ? this.right[g]! : this.left[g]!;
      if (this.red[uncle] === 1) {
        this.red[p] = 0;
        this.red[uncle] = 0;
        this.red[g] = 1;
        z = g;
        continue;
      }
      if (leftSide && z === this.right[p]) {
        z = p;
        this.rotateLeft(z);
      } else if (!leftSide && z === this.left[p]) {
        z = p;
        this.rotateRight(z);
      }
      const p2 = this.parent[z]!;
      const g2 = this.parent[p2]!;
      this.red[p2] = 0;
      this.red[g2] = 1;
      if (leftSide) this.rotateRight(g2);
      else this.rotateLeft(g2);
    }
    this.red[this.rootId] = 0;
  }

  private transplant(u: number, v: number): void {
    const pu = this.parent[u]!;
    if (pu === NIL) this.rootId = v;
    else if (u === this.left[pu]) this.left[pu] = v;
    else this.right[pu] = v;
    this.parent[v] = pu;
  }

  private minimum(xIn: number): number {
    let x = xIn;
    while (this.left[x] !== NIL) x = this.left[x]!;
    return x;
  }

  private maximum(xIn: number): number {
    let x = xIn;
    while (this.right[x] !== NIL) x = this.right[x]!;
    return x;
  }

  /** Remove node `z` (`rb_erase()`); its id may be reused by a later insert. */
  remove(z: number): void {
    let y = z;
    let yWasRed = this.red[y] === 1;
    let x: number;
    if (this.left[z] === NIL) {
      x = this.right[z]!;
      this.transplant(z, x);
    } else if (this.right[z] === NIL) {
      x = this.left[z]!;
      this.transplant(z, x);
    } else {
      y = this.minimum(this.right[z]!);
      yWasRed = this.red[y] === 1;
      x = this.right[y]!;
      if (this.parent[y] === z) this.parent[x] = y;
      else {
        this.transplant(y, x);
        this.right[y] = this.right[z]!;
        this.parent[this.right[y]!] = y;
      }
      this.transplant(z, y);
      this.left[y] = this.left[z]!;
      this.parent[this.left[y]!] = y;
      this.red[y] = this.red[z]!;
    }
    if (!yWasRed) this.deleteFixup(x);
    this.parent[NIL] = NIL;
    this.red[NIL] = 0;
    this.freeIds.push(z);
    this.count--;
  }

  private deleteFixup(xIn: number): void {
    let x = xIn;
    while (x !== this.rootId && this.red[x] === 0) {
      const p = this.parent[x]!;
      const leftSide = x === this.left[p];
      let w = leftSide ? this.right[p]! : this.left[p]!;
      if (this.red[w] === 1) {
        this.red[w] = 0;
        this.red[p] = 1;
        if (leftSide) this.rotateLeft(p);
        else this.rotateRight(p);
        w = leftSide ? this.right[p]! : this.left[p]!;
      }
      const near = leftSide ? this.left[w]! : this.right[w]!;
      const far = leftSide ? this.right[w]! : this.left[w]!;
      if (this.red[near] === 0 && this.red[far] === 0) {
        this.red[w] = 1;
        x = p;
        continue;
      }
      if (this.red[far] === 0) {
        this.red[near] = 0;
        this.red[w] = 1;
        if (leftSide) this.rotateRight(w);
        else this.rotateLeft(w);
        w = leftSide ? this.right[p]! : this.left[p]!;
      }
      this.red[w] = this.red[p]!;
      this.red[p] = 0;
      this.red[leftSide ? this.right[w]! : this.left[w]!] = 0;
      if (leftSide) this.rotateLeft(p);
      else this.rotateRight(p);
      x = this.rootId;
    }
    this.red[x] = 0;
  }

  /** `rb_first()`. */
  first(): number {
    return this.rootId === NIL ? NIL : this.minimum(this.rootId);
  }

  /** `rb_last()`. */
  last(): number {
    return this.rootId === NIL ? NIL : this.maximum(this.rootId);
  }

  /** `rb_next()`: the node after `x` in pfn order, or NIL. */
  next(xIn: number): number {
    let x = xIn;
    if (this.right[x] !== NIL) return this.minimum(this.right[x]!);
    let y = this.parent[x]!;
    while (y !== NIL && x === this.right[y]) {
      x = y;
      y = this.parent[y]!;
    }
    return y;
  }

  /** `rb_prev()`: the node before `x` in pfn order, or NIL. */
  prev(xIn: number): number {
    let x = xIn;
    if (this.left[x] !== NIL) return this.maximum(this.left[x]!);
    let y = this.parent[x]!;
    while (y !== NIL && x === this.left[y]) {
      x = y;
      y = this.parent[y]!;
    }
    return y;
  }

  /** `private_find_iova()`: the node whose range contains `pfn`, or NIL. */
  find(pfn: number): number {
    let x = this.rootId;
    while (x !== NIL) {
      if (pfn < this.lo[x]!) x = this.left[x]!;
      else if (pfn > this.hi[x]!) x = this.right[x]!;
      else return x;
    }
    return NIL;
  }

  /** The lowest node with pfn_hi >= pfn, or NIL (ranges never overlap, so pfn_hi is ordered too). */
  lowestEndingAtOrAbove(pfn: number): number {
    let x = this.rootId;
    let best = NIL;
    while (x !== NIL) {
      if (this.hi[x]! >= pfn) {
        best = x;
        x = this.left[x]!;
      } else x = this.right[x]!;
    }
    return best;
  }

  /** Check the red-black and order invariants (tests); throws on a violation. @returns black height. */
  checkInvariants(): number {
    if (this.red[this.rootId] === 1) throw new Error('rbtree: red root');
    const walk = (x: number, lo: number, hi: number): number => {
      if (x === NIL) return 1;
      const k = this.lo[x]!;
      if (k <= lo || k >= hi) throw new Error(`rbtree: order broken at ${k}`);
      const l = this.left[x]!;
      const r = this.right[x]!;
      if (l !== NIL && this.parent[l] !== x) throw new Error('rbtree: parent link');
      if (r !== NIL && this.parent[r] !== x) throw new Error('rbtree: parent link');
      if (this.red[x] === 1 && (this.red[l] === 1 || this.red[r] === 1)) throw new Error('rbtree: red-red');
      const bl = walk(l, lo, k);
      if (bl !== walk(r, k, hi)) throw new Error('rbtree: black height');
      return bl + (this.red[x] === 1 ? 0 : 1);
    };
    return walk(this.rootId, -Infinity, Infinity);
  }
}
