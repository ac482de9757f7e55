// A binary min-heap of (number key, value) pairs on parallel arrays, for the simulator's hot queues
// (flow completions, the water-filling solver). Equal keys pop in an order fixed by the history of
// pushes and pops: deterministic, but not first-in first-out. Removal is lazy: callers push a fresh
// entry when a key changes and skip stale entries when they surface. Mirrors no kernel file.

export class MinHeap<T> {
  private keys: number[] = [];
  private vals: T[] = [];
  /** Key of the entry most recently returned by pop(). */
  poppedKey = 0;

  get size(): number {
    return this.keys.length;
  }

  clear(): void {
    this.keys.length = 0;
    this.vals.length = 0;
  }

  push(key: number, val: T): void {
    const { keys, vals } = this;
    let i = keys.length;
    keys.push(key);
    vals.push(val);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pk = keys[p]!;
      if (pk <= key) break;
      keys[i] = pk;
      vals[i] = vals[p]!;
      i = p;
    }
    keys[i] = key;
    vals[i] = val;
  }

  /** Smallest key; Infinity when empty. */
  peekKey(): number {
    return this.keys.length > 0 ? this.keys[0]! : Number.POSITIVE_INFINITY;
  }

  /** Value with the smallest key. Precondition: not empty. */
  peek(): T {
    return this.vals[0]!;
  }

  /** Remove and return the value with the smallest key (its key goes to `poppedKey`). Precondition: not empty. */
  pop(): T {
    const { keys, vals } = this;
    const top = vals[0]!;
    this.poppedKey = keys[0]!;
    const lk = keys.pop()!;
    const lv = vals.pop()!;
    const n = keys.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && keys[r]! < keys[l]! ? r : l;
        const ck = keys[c]!;
        if (lk <= ck) break;
        keys[i] = ck;
        vals[i] = vals[c]!;
        i = c;
      }
      keys[i] = lk;
      vals[i] = lv;
    }
    return top;
  }
}
