// Min-heaps for the simulator's hot queues. MinHeap holds (number key, value) pairs on parallel
// arrays with lazy removal (callers push a fresh entry when a key changes and skip stale ones as they
// surface): the water-filling solver and per-class member queues. IndexedMinHeap keeps each item's
// position on the item, so keys move in place: the flow model's completion queue. Equal keys pop in
// an order fixed by the history of operations: deterministic, not first-in first-out. Mirrors no
// kernel file.

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

/** An item of an IndexedMinHeap: the heap keeps its position and key on it. */
export interface HeapSlot {
  heapIndex: number;
  heapKey: number;
}

/**
 * A binary min-heap whose items know their position, so a key can change or an item leave in
 * O(log n) with no stale entries left behind (the flow model's completion queue, where every
 * solve moves many keys).
 */
export class IndexedMinHeap<T extends HeapSlot> {
  private items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** Smallest key; Infinity when empty. */
  peekKey(): number {
    return this.items.length > 0 ? this.items[0]!.heapKey : Number.POSITIVE_INFINITY;
  }

  /** Item with the smallest key. Precondition: not empty. */
  peek(): T {
    return this.items[0]!;
  }

  /** Insert `item` with `key`, or move it there if it is already in. */
  set(item: T, key: number): void {
    if (item.heapIndex < 0) {
      item.heapIndex = this.items.length;
      item.heapKey = key;
      this.items.push(item);
      this.up(item.heapIndex);
      return;
    }
    const old = item.heapKey;
    item.heapKey = key;
    if (key < old) this.up(item.heapIndex);
    else this.down(item.heapIndex);
  }

  /** Take `item` out if it is in. */
  delete(item: T): void {
    const i = item.heapIndex;
    if (i < 0) return;
    item.heapIndex = -1;
    const last = this.items.pop()!;
    if (last === item) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.up(i);
    this.down(last.heapIndex);
  }

  /** Remove and return the item with the smallest key. Precondition: not empty. */
  pop(): T {
    const top = this.items[0]!;
    this.delete(top);
    return top;
  }

  private up(start: number): void {
    const items = this.items;
    const it = items[start]!;
    let i = start;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pi = items[p]!;
      if (pi.heapKey <= it.heapKey) break;
      items[i] = pi;
      pi.heapIndex = i;
      i = p;
    }
    items[i] = it;
    it.heapIndex = i;
  }

  private down(start: number): void {
    const items = this.items;
    const n = items.length;
    const it = items[start]!;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && items[r]!.heapKey < items[l]!.heapKey ? r : l;
      const ci = items[c]!;
      if (it.heapKey <= ci.heapKey) break;
      items[i] = ci;
      ci.heapIndex = i;
      i = c;
    }
    items[i] = it;
    it.heapIndex = i;
  }
}
