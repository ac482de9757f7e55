// Max-min fair rates by progressive filling (water-filling), for one connected component of the
// flow model. Mirrors no kernel file: this is the fabric's physics, not Linux.
//
// Flows with the same path and the same per-flow cap get the same max-min rate, so the solver works
// on flow classes (path + cap, with a count of flows) and its cost grows with distinct paths, not
// with flows. Progressive filling raises every unfrozen class's rate together; the first resource
// to fill (smallest remaining capacity / unfrozen flows) freezes the classes through it at its fair
// share, and so on. A per-flow cap is a private bottleneck met when the water reaches it.
//
//   share(r) = remaining(r) / unfrozen flows(r)          freeze at min over r of share(r), or a cap
//
// Shares only rise as classes freeze (a resource whose share is above the level being frozen keeps
// a share at least as high), so a lazy min-heap of shares is exact: a stale entry is lower than the
// resource's current share and is skipped. Cost: O(classes x path length x log).

import { MinHeap } from './min-heap.js';

/** What the solver reads and writes on a resource (its scratch fields are owned by the solver). */
export interface SolveResource {
  readonly capacityBytesPerNs: number;
  readonly classes: ReadonlySet<SolveClass>;
  /** Scratch: capacity not yet given to frozen classes. */
  remBytesPerNs: number;
  /** Scratch: flows through this resource not yet frozen. */
  unfrozen: number;
  /** Sum of the rates of the flows through it, written by the solver. */
  rateBytesPerNs: number;
}

export interface SolveClass {
  readonly path: readonly SolveResource[];
  /** Per-flow cap; Infinity for none. */
  readonly capBytesPerNs: number;
  /** Flows in the class (> 0 while the class exists). */
  readonly count: number;
  /** Scratch. */
  frozen: boolean;
  /** Per-flow rate, written by the solver. */
  newRateBytesPerNs: number;
}

const share = (r: SolveResource): number => (r.remBytesPerNs > 0 ? r.remBytesPerNs / r.unfrozen : 0);

const heap = new MinHeap<SolveResource>();
const touched: SolveResource[] = [];

function freeze(c: SolveClass, rate: number): void {
  c.frozen = true;
  c.newRateBytesPerNs = rate;
  const used = rate * c.count;
  for (const q of c.path) {
    q.remBytesPerNs -= used;
    q.unfrozen -= c.count;
    q.rateBytesPerNs += used;
    touched.push(q);
  }
}

function pushTouched(): void {
  for (const q of touched) if (q.unfrozen > 0) heap.push(share(q), q);
  touched.length = 0;
}

/**
 * Give every class of a component its max-min fair per-flow rate.
 * Preconditions: `resources` holds every resource on the path of every class in `classes`, and
 * every class through one of them is in `classes` (a closed component); every class has a path or a
 * finite cap. Violations are bugs (throws).
 * @returns nothing; writes `newRateBytesPerNs` on classes and `rateBytesPerNs` on resources.
 */
export function solveMaxMin(classes: readonly SolveClass[], resources: readonly SolveResource[]): void {
  heap.clear();
  for (const r of resources) {
    r.remBytesPerNs = r.capacityBytesPerNs;
    r.rateBytesPerNs = 0;
    let n = 0;
    for (const c of r.classes) n += c.count;
    r.unfrozen = n;
    if (n > 0) heap.push(share(r), r);
  }
  const capped: SolveClass[] = [];
  for (const c of classes) {
    c.frozen = false;
    c.newRateBytesPerNs = 0;
    if (c.capBytesPerNs !== Number.POSITIVE_INFINITY) capped.push(c);
    else if (c.path.length === 0) throw new Error('flow class with neither a path nor a cap');
  }
  capped.sort((a, b) => a.capBytesPerNs - b.capBytesPerNs);
  let nextCap = 0;
  for (;;) {
    while (heap.size > 0) {
      const r = heap.peek();
      if (r.unfrozen > 0 && heap.peekKey() === share(r)) break;
      heap.pop();
    }
    while (nextCap < capped.length && capped[nextCap]!.frozen) nextCap++;
    const cap = nextCap < capped.length ? capped[nextCap]! : null;
    if (cap && cap.capBytesPerNs <= heap.peekKey()) {
      freeze(cap, cap.capBytesPerNs);
      pushTouched();
      continue;
    }
    if (heap.size === 0) break;
    const level = heap.peekKey();
    const r = heap.pop();
    for (const c of r.classes) if (!c.frozen) freeze(c, level);
    pushTouched();
  }
  for (const c of classes)
    if (!c.frozen) throw new Error('solveMaxMin: a class was left unfrozen (component not closed)');
}
