// Invariant checkers: objects that run beside the model, watch what it does, and report broken
// invariants, in the manner of TigerBeetle's simulator (its checkers are separate from the code they
// check). Mirrors no kernel file; the nearest kernel relative is dma-debug (kernel/dma/debug.c),
// which watches the DMA API from the side the same way.
//
//   model ──observe(o)──> CheckerSet ──> checker 1, checker 2, ...   (violations collected, not thrown)
//   end of run: finish(now); assertClean(reproduce) throws one error naming every violation and the
//   command that reproduces the run.
//
// Observations are a discriminated union that grows with the model (DMA map/unmap, dma-buf attach,
// ...); a checker ignores the kinds it does not know. The first checker here is "no byte lost or
// corrupted": the destination of every completed transfer hashes to what its source hashed to when
// the transfer started.

import { Checksum } from '../hw/memory/checksum.js';
import type { MemPiece } from '../hw/memory/phys-memory-map.js';

export interface Violation {
  readonly checker: string;
  readonly atNs: number;
  readonly message: string;
}

/** A transfer's source or destination: region pieces, as PhysMemoryMap.resolve returns them. */
export type MemSpan = readonly MemPiece[];

export type SimObservation =
  | {
      readonly kind: 'transfer-start';
      readonly atNs: number;
      readonly id: number;
      readonly label: string;
      readonly src: MemSpan;
      readonly dst: MemSpan;
    }
  | { readonly kind: 'transfer-end'; readonly atNs: number; readonly id: number }
  | { readonly kind: 'transfer-abort'; readonly atNs: number; readonly id: number };

export interface InvariantChecker {
  readonly name: string;
  /** Look at one observation; record (never throw) any violation. */
  observe(o: SimObservation): void;
  /** The run is over at `atNs`: report what should have finished and did not. */
  finish(atNs: number): void;
  readonly violations: readonly Violation[];
}

/** Fans observations out to every checker and gathers their violations. */
export class CheckerSet {
  private readonly checkers: InvariantChecker[] = [];

  constructor(checkers: readonly InvariantChecker[] = []) {
    for (const c of checkers) this.add(c);
  }

  add(c: InvariantChecker): void {
    this.checkers.push(c);
  }

  observe(o: SimObservation): void {
    for (const c of this.checkers) c.observe(o);
  }

  finish(atNs: number): void {
    for (const c of this.checkers) c.finish(atNs);
  }

  get violations(): readonly Violation[] {
    return this.checkers.flatMap((c) => c.violations);
  }

  /** Throw if any checker saw a violation; the message lists them and how to reproduce the run. */
  assertClean(reproduce: string): void {
    const v = this.violations;
    if (v.length === 0) return;
    const lines = v.slice(0, 20).map((x) => `  [${x.checker}] at ${x.atNs} ns: ${x.message}`);
    if (v.length > 20) lines.push(`  ... and ${v.length - 20} more`);
    throw new Error(`${v.length} invariant violation(s):\n${lines.join('\n')}\nreproduce with: ${reproduce}`);
  }
}

/** @returns the bytes a span covers. */
export const spanLength = (s: MemSpan): number => s.reduce((a, p) => a + p.length, 0);

/**
 * 64-bit checksum of a span, hashed as one stream across its pieces (see hw/memory/checksum.ts).
 * @returns the digest; no errno (out-of-range pieces are bugs and throw).
 */
export function spanChecksum(s: MemSpan): bigint {
  const h = new Checksum();
  for (const p of s) p.region.hashInto(h, p.offset, p.length);
  return h.digest();
}

const hex64 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

/** No byte lost or corrupted: every transfer's destination ends equal to its source at the start. */
export class NoByteLostChecker implements InvariantChecker {
  readonly name = 'no-byte-lost';
  private readonly open = new Map<number, { label: string; dst: MemSpan; sum: bigint; length: number }>();
  private readonly found: Violation[] = [];

  get violations(): readonly Violation[] {
    return this.found;
  }

  observe(o: SimObservation): void {
    if (o.kind === 'transfer-start') this.start(o);
    else if (o.kind === 'transfer-end') this.end(o.id, o.atNs);
    else if (o.kind === 'transfer-abort' && !this.open.delete(o.id))
      this.report(o.atNs, `transfer ${o.id} aborted but was never started`);
  }

  finish(atNs: number): void {
    for (const [id, t] of this.open)
      this.report(atNs, `transfer ${id} (${t.label}) never completed: ${t.length} bytes lost`);
    this.open.clear();
  }

  private start(o: Extract<SimObservation, { kind: 'transfer-start' }>): void {
    const length = spanLength(o.src);
    if (spanLength(o.dst) !== length)
      this.report(
        o.atNs,
        `transfer ${o.id} (${o.label}): source is ${length} bytes, destination ${spanLength(o.dst)}`,
      );
    if (this.open.has(o.id)) this.report(o.atNs, `transfer ${o.id} (${o.label}) started twice`);
    this.open.set(o.id, { label: o.label, dst: o.dst, sum: spanChecksum(o.src), length });
  }

  private end(id: number, atNs: number): void {
    const t = this.open.get(id);
    if (!t) {
      this.report(atNs, `transfer ${id} completed but was never started (or completed twice)`);
      return;
    }
    this.open.delete(id);
    const got = spanChecksum(t.dst);
    if (got !== t.sum)
      this.report(
        atNs,
        `transfer ${id} (${t.label}): destination checksum ${hex64(got)} != source ${hex64(t.sum)} over ${t.length} bytes`,
      );
  }

  private report(atNs: number, message: string): void {
    this.found.push({ checker: this.name, atNs, message });
  }
}
