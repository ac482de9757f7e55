// What the two dma-buf runs share: the run configuration (scenario values with the CLI's overrides),
// device lookup by OS name or PCI address, seeded data, and the part of the result every dma-buf run
// reports (verification, timeline, kernel warnings, dma-debug ledger, kernel log, expectations).
// Mirrors no kernel file.

import type { Machine, PciFunction } from '../../../hw/pci.js';
import type { KernelWarning } from '../../../kernel/dma-buf/world.js';
import type { KernelOnFabric } from '../../../kernel/drivers/kernel-on-fabric.js';
import type { TimelineEvent } from '../../../kernel/drivers/timeline.js';
import type { Prng } from '../../../sim/prng.js';
import { TopologyError } from '../../../topology/errors.js';
import type { Expectation } from '../runner.js';
import type { DmabufScenario } from './dmabuf-scenario-file.js';

export interface DmabufRunConfig {
  readonly kernel: '6.1' | 'newest';
  readonly seed: number;
  readonly iommu: 'off' | 'strict' | 'lazy';
}

/** The overrides `dmasim run` accepts. */
export interface DmabufRunOptions {
  readonly kernel?: '6.1' | 'newest' | undefined;
  readonly seed?: number | undefined;
  readonly iommu?: 'off' | 'strict' | 'lazy' | 'passthrough' | undefined;
}

export interface DmabufRunBase {
  readonly scenario: string;
  readonly machine: string;
  readonly kernel: '6.1' | 'newest';
  readonly seed: number;
  readonly iommu: string;
  /** Every byte checked where it landed, and every invariant of the run held. */
  readonly verified: boolean;
  readonly durationNs: number;
  readonly timeline: readonly TimelineEvent[];
  /** dma-buf WARNs and lockdep reports, with the offending call. */
  readonly warnings: readonly KernelWarning[];
  /** dma-debug findings. */
  readonly ledger: readonly string[];
  readonly kernelLog: readonly string[];
  readonly expectations: readonly Expectation[];
}

/** The scenario's settings with the command line's overrides applied (passthrough is not a DMA domain). */
export function runConfig(sc: DmabufScenario, o: DmabufRunOptions, machine: Machine): DmabufRunConfig {
  const iommu = o.iommu ?? sc.doc.iommu ?? (machine.iommu === true ? 'strict' : 'off');
  if (iommu === 'passthrough')
    throw new TopologyError(sc.path || sc.name, 'dma-buf scenarios need --iommu off, strict or lazy');
  return { kernel: o.kernel ?? sc.doc.kernel ?? 'newest', seed: o.seed ?? sc.doc.seed ?? 1, iommu };
}

/** A function of the machine by OS name (gpu0), PCI address, or a suffix of it (04:00.0). */
export function findFn(w: KernelOnFabric, sc: DmabufScenario, ref: string, role: string): PciFunction {
  const f = w.k.machine.functions.find(
    (x) => x.osNames.includes(ref) || x.name === ref || x.name.endsWith(ref),
  );
  if (!f)
    throw new TopologyError(sc.path || sc.name, `${role} "${ref}" is not a device of ${w.k.machine.name}`);
  return f;
}

/** `n` seeded random bytes (drawn from their own PRNG: data never changes the run's events). */
export function randomBytes(prng: Prng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = prng.nextU32();
  for (let i = words.length * 4; i < n; i++) out[i] = prng.nextU32() & 0xff;
  return out;
}

/** Byte equality without an element-by-element diff. */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length &&
  Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));

/** The shared tail of a result: timeline, warnings, ledger and log since `logMark`. */
export function runTail(
  w: KernelOnFabric,
  logMark: number,
): Pick<DmabufRunBase, 'timeline' | 'warnings' | 'ledger' | 'kernelLog'> {
  return {
    timeline: [...w.tl.events],
    warnings: [...w.world.warnings],
    ledger: w.k.dma.debug.reports.flatMap((r) => r.lines),
    kernelLog: w.k.log.lines
      .slice(logMark)
      .map((l) => `[${(l.timeNs / 1e9).toFixed(6).padStart(12)}] ${l.text}`),
  };
}

/** The timeline with DMA spans merged in by time (stable: recorded events first at equal times). */
export function withSpans(
  events: readonly TimelineEvent[],
  spans: readonly TimelineEvent[],
): TimelineEvent[] {
  return [...events, ...spans]
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.ns - b.e.ns || a.i - b.i)
    .map((x) => x.e);
}

/** A span of DMA chunks as a timeline event. */
export function dmaSpan(
  who: string,
  firstNs: number,
  lastNs: number,
  chunks: number,
  bytes: number,
  how: string,
): TimelineEvent {
  return {
    ns: firstNs,
    who,
    what: 'DMA chunks',
    detail: `${chunks} chunk(s), ${bytes} bytes ${how}, until ${Math.round(lastNs)} ns`,
  };
}

/** An expectation line. */
export const expectation = (what: string, ok: boolean, detail: string): Expectation => ({ what, ok, detail });
