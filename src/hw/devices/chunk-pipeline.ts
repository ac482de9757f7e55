// The chunk pipeline of a DMA engine or NIC: transfers are cut into chunks, each chunk passes through
// stages in order (read channel, wire, write channel ...), each stage serves one chunk at a time, and
// at most `depth` chunks are in flight (one staging buffer each). With depth >= 2 the stages overlap:
// chunk i is written while chunk i+1 is read, as real engines with separate read and write channels
// do. Mirrors no kernel file.
//
//   pull() ─> [slot] ─> stage 0 (one at a time) ─> stage 1 (one at a time) ─> ... ─> finish(chunk, err)
//
// A stage may skip a chunk (return null), and may fail it (resolve to an error value); a failed
// chunk skips the remaining stages.

import type { Await } from './device-task.js';

export type Stage<C, E> = (chunk: C, slot: number) => Await<E | null> | null;

interface StageState<C> {
  busy: boolean;
  readonly queue: { chunk: C; slot: number }[];
}

export class ChunkPipeline<C, E> {
  readonly depth: number;
  private readonly stages: readonly Stage<C, E>[];
  private readonly state: StageState<C>[];
  private readonly freeSlots: number[];
  private readonly pull: () => C | null;
  private readonly finish: (chunk: C, err: E | null) => void;
  private pumping = false;

  constructor(
    depth: number,
    stages: readonly Stage<C, E>[],
    pull: () => C | null,
    finish: (chunk: C, err: E | null) => void,
  ) {
    if (!(Number.isInteger(depth) && depth > 0)) throw new RangeError(`chunk pipeline: bad depth ${depth}`);
    this.depth = depth;
    this.stages = stages;
    this.state = stages.map(() => ({ busy: false, queue: [] }));
    this.freeSlots = Array.from({ length: depth }, (_, i) => depth - 1 - i);
    this.pull = pull;
    this.finish = finish;
  }

  /** Chunks in flight now. */
  get inFlight(): number {
    return this.depth - this.freeSlots.length;
  }

  /** Take new chunks while slots are free (call after new work arrives). */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.freeSlots.length > 0) {
        const c = this.pull();
        if (c === null) break;
        this.enter(0, c, this.freeSlots.pop()!);
      }
    } finally {
      this.pumping = false;
    }
  }

  private enter(i: number, chunk: C, slot: number): void {
    if (i === this.stages.length) {
      this.done(chunk, slot, null);
      return;
    }
    const st = this.state[i]!;
    st.queue.push({ chunk, slot });
    this.serve(i);
  }

  private serve(i: number): void {
    const st = this.state[i]!;
    while (!st.busy && st.queue.length > 0) {
      const { chunk, slot } = st.queue.shift()!;
      const w = this.stages[i]!(chunk, slot);
      if (w === null) {
        this.enter(i + 1, chunk, slot);
        continue;
      }
      st.busy = true;
      w.start((err) => {
        st.busy = false;
        if (err !== null) this.done(chunk, slot, err);
        else this.enter(i + 1, chunk, slot);
        this.serve(i);
      });
    }
  }

  private done(chunk: C, slot: number, err: E | null): void {
    this.freeSlots.push(slot);
    this.finish(chunk, err);
    this.pump();
  }
}
