// The fluid bandwidth model: transfers (flows) share resources (a PCIe link in one direction, a root
// complex's crossbar, a memory controller: anything with a capacity in bytes/ns) max-min fairly, and
// rates are re-solved whenever a flow starts or ends. Mirrors no kernel file: this is the machine's
// physics, under the kernel model.
//
//   startFlow ──(sum of hop latencies, once)──> active: shares bandwidth ──(last byte)──> onComplete
//
// Time and rounding: times are ns as doubles, never rounded to whole ns. A flow's completion time is
// computed at each rate change as now + remaining / rate and scheduled at exactly that time
// (Engine.scheduleAt keeps it as given); when it fires, the flow's remaining bytes are set to exactly
// zero, so each flow delivers exactly its size. Bytes in between are fluid (fractional). Per-resource
// byte counters integrate rate over time and agree with the sum of sizes to ~1e-12 relative.
//
// Speed: flows with the same path and cap form a class with one rate and one "service" counter (bytes
// served to each member since the class began); a member finishes when the service reaches its
// target, so a rate change costs O(classes), not O(flows). All changes within one instant are
// batched into one solve, and only the connected component around changed resources is re-solved.

import type { Engine, EventHandle } from './engine.js';
import { Flow, FlowClass, type FlowOptions, FlowResource, type ResourceStats } from './flow-class.js';
import { solveMaxMin } from './flow-solve.js';
import type { LinkRate } from './link-rate.js';
import { IndexedMinHeap } from './min-heap.js';

export { Flow, type FlowOptions, FlowResource, type FlowState, type ResourceStats } from './flow-class.js';

const INF = Number.POSITIVE_INFINITY;

export class FlowModel {
  readonly engine: Engine;
  readonly resources: FlowResource[] = [];
  /** Flows completed and solves run so far (for benchmarks and summaries). */
  completed = 0;
  solves = 0;
  private readonly classes = new Map<string, FlowClass>();
  private readonly due = new IndexedMinHeap<FlowClass>();
  private wake: EventHandle | null = null;
  private wakeNs = INF;
  private readonly dirtyRes: FlowResource[] = [];
  private readonly dirtyCls: FlowClass[] = [];
  private solveQueued = false;
  private batching = false;
  private epoch = 0;
  private nextFlowId = 0;
  private active = 0;

  constructor(engine: Engine) {
    this.engine = engine;
  }

  /** Flows currently sharing bandwidth (not counting those still in their start latency). */
  get activeFlows(): number {
    return this.active;
  }

  /**
   * Add a resource of `capacityBytesPerNs` (= GB/s) whose traversal costs `latencyNs` once per flow.
   * Preconditions: finite, non-negative capacity and latency (else throws: a bug in the caller).
   */
  addResource(name: string, capacityBytesPerNs: number, latencyNs = 0): FlowResource {
    checkRate('capacity', capacityBytesPerNs);
    checkRate('latency', latencyNs);
    const r = new FlowResource(this.resources.length, name, capacityBytesPerNs, latencyNs, this.engine.nowNs);
    this.resources.push(r);
    return r;
  }

  /**
   * Change a resource's capacity from now on (a link retrained narrower, a throttled controller).
   * At 0 its flows stall (no completion is scheduled) until capacity returns.
   */
  setCapacity(r: FlowResource, capacityBytesPerNs: number): void {
    checkRate('capacity', capacityBytesPerNs);
    r.capacityBytesPerNs = capacityBytesPerNs;
    this.markRes(r);
    this.requestSolve();
  }

  /**
   * Start a transfer of `size` bytes along `path`. It begins to share bandwidth after the sum of
   * the hop latencies (plus `extraLatencyNs`) and calls `onComplete` when its last byte has moved.
   * Preconditions: a path without repeats, and a path or a finite cap (else throws).
   */
  startFlow(o: FlowOptions): Flow {
    const cap = o.capBytesPerNs ?? INF;
    if (cap !== INF) checkRate('cap', cap);
    if (o.path.length === 0 && cap === INF) throw new RangeError('startFlow: empty path and no cap');
    const sizeBytes = Number(o.size);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0)
      throw new RangeError(`startFlow: bad size ${o.size}`);
    const ep = ++this.epoch;
    let latencyNs = o.extraLatencyNs ?? 0;
    checkRate('extra latency', latencyNs);
    for (const r of o.path) {
      if (r.mark === ep) throw new RangeError(`startFlow: ${r.name} appears twice in the path`);
      r.mark = ep;
      latencyNs += r.latencyNs;
    }
    const f = new Flow(this.nextFlowId++, o, sizeBytes, cap, latencyNs, this.engine.nowNs);
    if (latencyNs > 0) f.timer = this.engine.schedule(latencyNs, () => this.activate(f));
    else this.activate(f);
    return f;
  }

  /**
   * Stop a flow early (a fault, a cancelled DMA). `f.deliveredBytes` says how much had moved.
   * @returns false when the flow had already completed or been aborted.
   */
  abortFlow(f: Flow): boolean {
    const now = this.engine.nowNs;
    if (f.state === 'latency') {
      if (f.timer) this.engine.cancel(f.timer);
      f.timer = null;
      f.deliveredBytes = 0;
    } else if (f.state === 'active') {
      // The class's rate holds up to now even if a change at now awaits a solve.
      const c = f.cls!;
      c.advance(now);
      f.deliveredBytes = Math.min(f.sizeBytes, Math.max(0, f.sizeBytes - (f.target - c.serviceBytes)));
      this.leave(f);
      this.requestSolve();
    } else return false;
    f.state = 'aborted';
    f.endNs = now;
    return true;
  }

  /** Current per-flow rate in bytes/ns (0 while in start latency or finished). */
  rateOf(f: Flow): number {
    if (f.state !== 'active') return 0;
    if (this.hasDirty()) this.solve();
    return f.cls!.rateBytesPerNs;
  }

  /** Bytes the flow still has to move now. */
  remainingBytes(f: Flow): number {
    if (f.state === 'latency') return f.sizeBytes;
    if (f.state !== 'active') return f.sizeBytes - f.deliveredBytes;
    const c = f.cls!;
    const served = c.serviceBytes + c.rateBytesPerNs * (this.engine.nowNs - c.serviceNs);
    return Math.max(0, f.target - served);
  }

  /** Accounting of one resource up to now. */
  stats(r: FlowResource): ResourceStats {
    const now = this.engine.nowNs;
    account(r, now);
    const span = now - r.createdNs;
    return {
      name: r.name,
      capacityBytesPerNs: r.capacityBytesPerNs,
      rateBytesPerNs: r.rateBytesPerNs,
      activeFlows: r.flowCount,
      bytesCarried: r.bytesCarried,
      busyNs: r.busyNs,
      utilisation: span > 0 && r.capacityBytesPerNs > 0 ? r.bytesCarried / (r.capacityBytesPerNs * span) : 0,
    };
  }

  private activate(f: Flow): void {
    const now = this.engine.nowNs;
    f.timer = null;
    f.state = 'active';
    f.activeNs = now;
    let key = f.capBytesPerNs === INF ? '' : `${f.capBytesPerNs}`;
    for (const r of f.path) key += `,${r.id}`;
    let c = this.classes.get(key);
    if (!c) {
      c = new FlowClass(key, f.path, f.capBytesPerNs, now);
      this.classes.set(key, c);
      for (const r of f.path) r.classes.add(c);
    }
    c.advance(now);
    f.cls = c;
    f.target = c.serviceBytes + f.sizeBytes;
    c.members.push(f.target, f);
    c.count++;
    c.changed = true;
    this.active++;
    for (const r of f.path) {
      r.flowCount++;
      this.markRes(r);
    }
    this.markCls(c);
    this.requestSolve();
  }

  /** Take an active flow out of its class (it finished or was aborted). */
  private leave(f: Flow): void {
    const c = f.cls!;
    c.count--;
    c.changed = true;
    this.active--;
    for (const r of c.path) {
      r.flowCount--;
      this.markRes(r);
    }
    this.markCls(c);
    if (c.count === 0) {
      c.dead = true;
      this.due.delete(c);
      for (const r of c.path) r.classes.delete(c);
      this.classes.delete(c.key);
    }
  }

  private markRes(r: FlowResource): void {
    if (!r.dirty) {
      r.dirty = true;
      this.dirtyRes.push(r);
    }
  }

  private markCls(c: FlowClass): void {
    if (!c.dirty) {
      c.dirty = true;
      this.dirtyCls.push(c);
    }
  }

  private hasDirty(): boolean {
    return this.dirtyRes.length > 0 || this.dirtyCls.length > 0;
  }

  private requestSolve(): void {
    if (this.batching || this.solveQueued) return;
    this.solveQueued = true;
    this.engine.schedule(0, () => {
      this.solveQueued = false;
      this.solve();
    });
  }

  /** Re-solve the components around everything marked dirty, then re-arm the completion wake-up. */
  private solve(): void {
    if (!this.hasDirty()) return;
    this.solves++;
    const now = this.engine.nowNs;
    const ep = ++this.epoch;
    const res: FlowResource[] = [];
    const cls: FlowClass[] = [];
    for (const r of this.dirtyRes) {
      r.dirty = false;
      if (r.mark !== ep) {
        r.mark = ep;
        res.push(r);
      }
    }
    for (const c of this.dirtyCls) {
      c.dirty = false;
      if (c.dead || c.mark === ep) continue;
      c.mark = ep;
      cls.push(c);
      for (const q of c.path)
        if (q.mark !== ep) {
          q.mark = ep;
          res.push(q);
        }
    }
    this.dirtyRes.length = 0;
    this.dirtyCls.length = 0;
    // Breadth-first over resources: res grows while we walk it, until the component is closed.
    for (let i = 0; i < res.length; i++)
      for (const c of res[i]!.classes) {
        if (c.mark === ep) continue;
        c.mark = ep;
        cls.push(c);
        for (const q of c.path)
          if (q.mark !== ep) {
            q.mark = ep;
            res.push(q);
          }
      }
    for (const r of res) account(r, now);
    for (const c of cls) c.advance(now);
    solveMaxMin(cls, res);
    for (const c of cls) {
      // Same rate and same members: the completion time already queued is still right.
      if (!c.changed && c.newRateBytesPerNs === c.rateBytesPerNs) continue;
      c.changed = false;
      c.rateBytesPerNs = c.newRateBytesPerNs;
      this.reschedule(c, now);
    }
    this.armWake();
  }

  private reschedule(c: FlowClass, now: number): void {
    const t = c.minTarget();
    const left = t - c.serviceBytes;
    const dueNs =
      t === INF ? INF : left <= 0 ? now : c.rateBytesPerNs > 0 ? now + left / c.rateBytesPerNs : INF;
    if (dueNs === INF) this.due.delete(c);
    else this.due.set(c, dueNs);
  }

  private armWake(): void {
    const t = this.due.peekKey();
    if (t === this.wakeNs) return;
    if (this.wake) this.engine.cancel(this.wake);
    this.wake = t === INF ? null : this.engine.scheduleAt(t, () => this.onWake());
    this.wakeNs = t;
  }

  /** Complete every flow due now, run their callbacks, then re-solve once. */
  private onWake(): void {
    this.wake = null;
    this.wakeNs = INF;
    const now = this.engine.nowNs;
    const done: Flow[] = [];
    const due = this.due;
    while (due.size > 0 && due.peekKey() <= now) {
      const c = due.pop();
      c.changed = true;
      c.advance(now);
      // The wake-up was computed for the smallest target: land on it exactly despite rounding.
      const first = c.minTarget();
      if (first !== INF && first > c.serviceBytes) c.serviceBytes = first;
      while (c.minTarget() <= c.serviceBytes) {
        const f = c.members.pop();
        f.state = 'done';
        f.endNs = now;
        f.deliveredBytes = f.sizeBytes;
        this.leave(f);
        this.completed++;
        done.push(f);
      }
      // Whatever happened, the class needs a new wake-up time from the coming solve.
      if (!c.dead) this.markCls(c);
    }
    done.sort((a, b) => a.id - b.id);
    this.batching = true;
    try {
      for (const f of done) f.onComplete?.(f);
    } finally {
      this.batching = false;
    }
    this.solve();
    this.armWake();
  }
}

/** Integrate a resource's byte and busy-time counters up to `now` at its current rate. */
function account(r: FlowResource, now: number): void {
  const dt = now - r.accountedNs;
  if (dt <= 0) return;
  r.bytesCarried += r.rateBytesPerNs * dt;
  if (r.rateBytesPerNs > 0) r.busyNs += dt;
  r.accountedNs = now;
}

function checkRate(what: string, v: number): void {
  if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`flow model: bad ${what} ${v}`);
}

/**
 * Both directions of a PCIe link as resources, each with the link's effective rate.
 * @returns the upstream and downstream resources; no errno.
 */
export function addPcieLinkResources(
  model: FlowModel,
  name: string,
  rate: LinkRate,
  latencyNs = 0,
): { readonly up: FlowResource; readonly down: FlowResource } {
  return {
    up: model.addResource(`${name} up`, rate.effectiveGBps, latencyNs),
    down: model.addResource(`${name} down`, rate.effectiveGBps, latencyNs),
  };
}
