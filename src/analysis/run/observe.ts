// Watching the fabric during a transfer: which way each data DMA went (hop by hop), how many bytes
// each path carried, how many crossed a root complex or a memory controller, whether an IOMMU
// translated them, and what was refused. A data DMA is one that moves namespace blocks (its device
// buffer is an NVMe controller's storage); queue, PRP-list and SGL traffic is counted apart as
// control traffic. Mirrors no kernel file.

import type { DmaObserver, DmaOptions } from '../../hw/fabric/data-path.js';
import { describeHop, type Hop } from '../../hw/fabric/hops.js';
import type { RouteOk, RouteRefused } from '../../hw/fabric/routing.js';
import type { SparseMemory } from '../../hw/memory/sparse-memory.js';

/** One way data went, and how much of it. */
export interface PathUse {
  /** Hop names from the requester to the target (for reads of host memory: the request's way). */
  readonly hops: readonly string[];
  /** What the bytes landed on or came from: "RAM node0" or "0000:04:00.0 BAR2". */
  readonly target: string;
  readonly via: 'peer' | 'root-complex';
  bytes: number;
  dmas: number;
}

export interface Refusal {
  readonly requester: string;
  readonly reason: string;
  readonly detail: string;
  count: number;
}

/** What one transfer did on the fabric. */
export interface TransferTraffic {
  readonly paths: PathUse[];
  dataBytes: number;
  rootComplexBytes: number;
  hostMemoryBytes: number;
  iovaBytes: number;
  controlBytes: number;
  readonly refusals: Refusal[];
}

export const newTraffic = (): TransferTraffic => ({
  paths: [],
  dataBytes: 0,
  rootComplexBytes: 0,
  hostMemoryBytes: 0,
  iovaBytes: 0,
  controlBytes: 0,
  refusals: [],
});

const hopNames = (hops: readonly Hop[]): string[] => hops.map(describeHop);

function targetName(r: RouteOk, i: number): string {
  const t = r.legs[i]!.target;
  return t.kind === 'ram' ? `RAM node${t.region.node}` : `${t.bar.fn.name} BAR${t.bar.bar.index}`;
}

/** An observer that adds every DMA to `current()` (nothing when it returns null). */
export function trafficObserver(
  storages: ReadonlySet<SparseMemory>,
  current: () => TransferTraffic | null,
): DmaObserver {
  const isData = (o: DmaOptions): boolean => o.local.kind === 'memory' && storages.has(o.local.mem);
  return {
    afterMove(o: DmaOptions, r: RouteOk) {
      const t = current();
      if (t === null) return;
      if (!isData(o)) {
        t.controlBytes += r.len;
        return;
      }
      t.dataBytes += r.len;
      r.legs.forEach((l, i) => {
        const hops = [
          `${o.requester.name} (${o.kind === 'write' ? 'DMA write' : 'DMA read'})`,
          ...hopNames(l.hops),
        ];
        const all = [...l.hops, ...l.completionHops];
        if (all.some((h) => h.kind === 'root-complex')) t.rootComplexBytes += l.len;
        if (all.some((h) => h.kind === 'memory-controller')) t.hostMemoryBytes += l.len;
        if (l.hops.some((h) => h.kind === 'iommu')) t.iovaBytes += l.len;
        const target = targetName(r, i);
        const key = `${hops.join('>')}|${target}`;
        const p = t.paths.find((x) => `${x.hops.join('>')}|${x.target}` === key);
        if (p) {
          p.bytes += l.len;
          p.dmas++;
        } else t.paths.push({ hops, target, via: l.via, bytes: l.len, dmas: 1 });
      });
    },
    refused(o: DmaOptions, r: RouteRefused) {
      const t = current();
      if (t === null) return;
      const f = t.refusals.find((x) => x.requester === o.requester.name && x.reason === r.reason);
      if (f) f.count++;
      else t.refusals.push({ requester: o.requester.name, reason: r.reason, detail: r.detail, count: 1 });
    },
  };
}
