// A run's timeline: what the drivers did and when (virtual ns), for scenario reports. Mirrors no kernel
// file; it plays the part of the kernel's tracepoints (dma_buf, iommu, rdma) read back after a run.

/** One event: time, who did it (a device or driver), what happened, and details for the report. */
export interface TimelineEvent {
  readonly ns: number;
  readonly who: string;
  readonly what: string;
  readonly detail?: string;
}

/** An event sink with a clock; `null` in places that record nothing. */
export interface Timeline {
  readonly now: () => number;
  readonly events: TimelineEvent[];
  /** Called with each event as it is recorded (checkers that must look at that very instant). */
  readonly listeners: ((e: TimelineEvent) => void)[];
}

export const createTimeline = (now: () => number): Timeline => ({ now, events: [], listeners: [] });

/** Record an event at the current virtual time (nothing when `tl` is null). */
export function note(tl: Timeline | null, who: string, what: string, detail?: string): void {
  if (tl === null) return;
  const e = detail === undefined ? { ns: tl.now(), who, what } : { ns: tl.now(), who, what, detail };
  tl.events.push(e);
  for (const l of tl.listeners) l(e);
}
