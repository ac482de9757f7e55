// A watch beside the fabric: every DMA of the importers that reaches the exported BAR range, counted
// before and after the moment the exporter's revoke returned (set by the run from the timeline, in
// event order, so a DMA finishing in the same nanosecond but before the return counts as before).
// After the revoke returns none may reach it. Mirrors no kernel file.

import type { DmaObserver, DmaOptions } from '../../../hw/fabric/data-path.js';
import type { Fabric } from '../../../hw/fabric/fabric.js';
import type { RouteOk } from '../../../hw/fabric/routing.js';
import type { PciFunction } from '../../../hw/pci.js';

export class BarAccessWatch implements DmaObserver {
  before = 0;
  after = 0;
  /** One line per access after the revoke returned. */
  readonly late: string[] = [];
  /** Set when the revoke returns. */
  revoked = false;
  private readonly fab: Fabric;
  private readonly fn: PciFunction;
  private readonly bar: number;
  private readonly start: bigint;
  private readonly end: bigint;
  private readonly requesters: ReadonlySet<string>;

  constructor(
    fab: Fabric,
    fn: PciFunction,
    bar: number,
    range: { start: bigint; len: bigint },
    requesters: Iterable<string>,
  ) {
    this.fab = fab;
    this.fn = fn;
    this.bar = bar;
    this.start = range.start;
    this.end = range.start + range.len;
    this.requesters = new Set(requesters);
    fab.observers.push(this);
  }

  beforeMove(o: DmaOptions, r: RouteOk): void {
    if (!this.requesters.has(o.requester.name)) return;
    for (const l of r.legs) {
      const t = l.target;
      if (t.kind !== 'bar' || t.bar.fn !== this.fn || t.bar.bar.index !== this.bar) continue;
      const at = t.bar.cpuBase + BigInt(t.offset);
      if (at + BigInt(l.len) <= this.start || at >= this.end) continue;
      if (!this.revoked) {
        this.before++;
        continue;
      }
      this.after++;
      this.late.push(
        `${o.requester.name} ${o.kind} of ${l.len} bytes at 0x${at.toString(16)} at ${this.fab.clock.nowNs} ns`,
      );
    }
  }
}
