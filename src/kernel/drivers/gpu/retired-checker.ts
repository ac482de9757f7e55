// Invariant checker beside the fabric: once a move has finished, no device may touch the memory the
// buffer left (the old VRAM range may already hold another buffer; the old GTT pages are back in the
// page allocator). For every DMA of the watched requesters it compares each leg's target, as a CPU
// physical range, with the GPU driver's retired ranges. Mirrors no kernel file.

import type { DmaObserver, DmaOptions } from '../../../hw/fabric/data-path.js';
import type { Fabric } from '../../../hw/fabric/fabric.js';
import type { RouteOk } from '../../../hw/fabric/routing.js';
import type { GpuDevice } from './gpu-bo.js';

export class RetiredAccessChecker implements DmaObserver {
  /** One sentence per DMA that reached retired memory. */
  readonly violations: string[] = [];
  /** DMAs of the watched requesters that were checked. */
  dmasChecked = 0;
  private readonly fab: Fabric;
  private readonly gdev: GpuDevice;
  private readonly requesters: ReadonlySet<string>;

  constructor(fab: Fabric, gdev: GpuDevice, requesters: Iterable<string>) {
    this.fab = fab;
    this.gdev = gdev;
    this.requesters = new Set(requesters);
    fab.observers.push(this);
  }

  beforeMove(o: DmaOptions, r: RouteOk): void {
    if (!this.requesters.has(o.requester.name)) return;
    this.dmasChecked++;
    const now = this.fab.clock.nowNs;
    for (const l of r.legs) {
      const t = l.target;
      const start =
        t.kind === 'ram' ? BigInt(t.region.base) + BigInt(t.offset) : t.bar.cpuBase + BigInt(t.offset);
      const end = start + BigInt(l.len);
      for (const x of this.gdev.retired) {
        if (x.sinceNs > now || (x.untilNs !== null && now >= x.untilNs)) continue;
        if (end <= x.cpuStart || start >= x.cpuStart + x.size) continue;
        this.violations.push(
          `${o.requester.name} ${o.kind} at 0x${start.toString(16)} (+${l.len}) hit ${x.bo}'s old ${x.domain} ` +
            `placement, retired at ${x.sinceNs} ns (now ${now} ns)`,
        );
      }
    }
  }
}
