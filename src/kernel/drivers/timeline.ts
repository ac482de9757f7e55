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
}

export const createTimeline = (now: () => number): Timeline => ({ now, events: [] });

/** Record an event at the current virtual time (nothing when `tl` is null). */
export function note(tl: Timeline | null, who: string, what: string, detail?: string): void {
  if (tl === null) return;
  tl.events.push(detail === undefined ? { ns: tl.now(), who, what } : { ns: tl.now(), who, what, detail });
}
