// The objects of the fluid bandwidth model (src/sim/flow.ts): resources, flows, and flow classes
// (flows sharing one path and cap, hence one rate). Mirrors no kernel file.

import type { Bytes } from '../hw/addr.js';
import type { EventHandle } from './engine.js';
import type { SolveClass, SolveResource } from './flow-solve.js';
import { type HeapSlot, MinHeap } from './min-heap.js';

/** A shared capacity: one direction of a link, a crossbar, a memory controller. */
export class FlowResource implements SolveResource {
  readonly id: number;
  readonly name: string;
  capacityBytesPerNs: number;
  readonly latencyNs: number;
  readonly createdNs: number;
  readonly classes = new Set<FlowClass>();
  /** Sum of member rates, as last solved (bytes/ns). */
  rateBytesPerNs = 0;
  /** Active flows through it. */
  flowCount = 0;
  /** @internal accounting, integrated up to `accountedNs` */
  bytesCarried = 0;
  busyNs = 0;
  accountedNs: number;
  /** @internal solver and traversal scratch */
  remBytesPerNs = 0;
  unfrozen = 0;
  mark = 0;
  dirty = false;
  constructor(id: number, name: string, capacityBytesPerNs: number, latencyNs: number, nowNs: number) {
    this.id = id;
    this.name = name;
    this.capacityBytesPerNs = capacityBytesPerNs;
    this.latencyNs = latencyNs;
    this.createdNs = nowNs;
    this.accountedNs = nowNs;
  }
}

export type FlowState = 'latency' | 'active' | 'done' | 'aborted';

export interface FlowOptions {
  readonly path: readonly FlowResource[];
  readonly size: Bytes;
  /** Per-flow rate cap in bytes/ns (a DMA engine's own limit); none by default. */
  readonly capBytesPerNs?: number;
  /** Latency added to the path's hop latencies (e.g. the completer's own response time). */
  readonly extraLatencyNs?: number;
  readonly onComplete?: (f: Flow) => void;
  /** Free-form label for traces and checkers. */
  readonly label?: string;
}

export class Flow {
  readonly id: number;
  readonly label: string;
  readonly path: readonly FlowResource[];
  readonly sizeBytes: number;
  readonly capBytesPerNs: number;
  readonly latencyNs: number;
  readonly startNs: number;
  state: FlowState = 'latency';
  /** When it began sharing bandwidth (startNs + latencyNs). */
  activeNs = Number.NaN;
  /** When its last byte arrived (or it was aborted). */
  endNs = Number.NaN;
  /** Bytes moved, set when it completes (= sizeBytes) or is aborted. */
  deliveredBytes = 0;
  /** @internal */
  cls: FlowClass | null = null;
  /** @internal the class service level at which it is done */
  target = 0;
  /** @internal */
  onComplete: ((f: Flow) => void) | null;
  /** @internal */
  timer: EventHandle | null = null;
  constructor(id: number, o: FlowOptions, sizeBytes: number, cap: number, latencyNs: number, nowNs: number) {
    this.id = id;
    this.label = o.label ?? `flow${id}`;
    this.path = o.path;
    this.sizeBytes = sizeBytes;
    this.capBytesPerNs = cap;
    this.latencyNs = latencyNs;
    this.startNs = nowNs;
    this.onComplete = o.onComplete ?? null;
  }
}

/** @internal Flows with one path and one cap: one rate, one service counter. */
export class FlowClass implements SolveClass, HeapSlot {
  readonly key: string;
  readonly path: readonly FlowResource[];
  readonly capBytesPerNs: number;
  count = 0;
  /** Members by target; aborted ones are skipped lazily. */
  readonly members = new MinHeap<Flow>();
  rateBytesPerNs = 0;
  serviceBytes = 0;
  serviceNs: number;
  /** Position in the completion queue (-1: not queued) and its key, the next member completion time. */
  heapIndex = -1;
  heapKey = Number.POSITIVE_INFINITY;
  /** Members joined or left since the last solve, so its completion time must be recomputed. */
  changed = false;
  dead = false;
  frozen = false;
  newRateBytesPerNs = 0;
  mark = 0;
  dirty = false;
  constructor(key: string, path: readonly FlowResource[], cap: number, nowNs: number) {
    this.key = key;
    this.path = path;
    this.capBytesPerNs = cap;
    this.serviceNs = nowNs;
  }
  /** Bring the service counter to `nowNs` at the current rate. */
  advance(nowNs: number): void {
    if (nowNs > this.serviceNs) {
      this.serviceBytes += this.rateBytesPerNs * (nowNs - this.serviceNs);
      this.serviceNs = nowNs;
    }
  }
  /** Smallest target among active members (dropping aborted ones); Infinity if none. */
  minTarget(): number {
    const m = this.members;
    while (m.size > 0 && m.peek().state !== 'active') m.pop();
    return m.size > 0 ? m.peekKey() : Number.POSITIVE_INFINITY;
  }
}

export interface ResourceStats {
  readonly name: string;
  readonly capacityBytesPerNs: number;
  readonly rateBytesPerNs: number;
  readonly activeFlows: number;
  readonly bytesCarried: number;
  /** Time with at least one flow moving bytes through it. */
  readonly busyNs: number;
  /** bytesCarried / (capacity x time since the resource was created); 0 before any time passed. */
  readonly utilisation: number;
}
