// The hops of a routed DMA: which link (and which direction), which switch crossbar, which root
// complex, IOMMU, socket link and memory controller a request or its completions cross, and what it
// lands on. Mirrors no kernel file. Routing (routing.ts) produces them; the data path (data-path.ts)
// turns them into bandwidth-model resources and byte counters.

import type { PciFunction } from '../pci.js';
import type { BarEntry, RamRegion } from './address-map.js';
import type {
  Fabric,
  FabricLink,
  FabricSwitch,
  MemoryController,
  RootComplex,
  SocketLink,
} from './fabric.js';
import type { BwResource } from './flow-seam.js';

export type Hop =
  | { readonly kind: 'link'; readonly link: FabricLink; readonly dir: 'up' | 'down' }
  | { readonly kind: 'switch'; readonly sw: FabricSwitch }
  | { readonly kind: 'root-complex'; readonly rc: RootComplex }
  | {
      readonly kind: 'iommu';
      readonly rc: RootComplex;
      readonly walkLevels: number;
      readonly iotlbMisses: number;
    }
  | { readonly kind: 'socket-link'; readonly link: SocketLink; readonly back: SocketLink }
  | { readonly kind: 'memory-controller'; readonly mc: MemoryController };

/** What a leg lands on: RAM of a node, or a BAR (memory or registers), at an offset inside it. */
export type Target =
  | { readonly kind: 'ram'; readonly region: RamRegion; readonly offset: number }
  | { readonly kind: 'bar'; readonly bar: BarEntry; readonly offset: number };

export interface RouteLeg {
  /** Offset of this piece inside the request, and its length. */
  readonly offset: number;
  readonly len: number;
  /** Hops of the request, from the requester to the target. */
  readonly hops: readonly Hop[];
  /** Hops of the completions carrying read data back (empty for writes: posted, no data returns). */
  readonly completionHops: readonly Hop[];
  readonly target: Target;
  /** Whether the piece stayed below the root complex. */
  readonly via: 'peer' | 'root-complex';
}

/** Hops from function `f` up through each bridge above it, until (and including) `stop`; null: all. */
export function climbHops(fab: Fabric, f: PciFunction, stop: PciFunction | null): Hop[] {
  const out: Hop[] = [];
  for (let b = f.bridge; b; b = b.bridge) {
    if (fab.role(b) === 'upstream') out.push({ kind: 'switch', sw: fab.switchOf(b)! });
    else out.push({ kind: 'link', link: fab.linkBelow(b)!, dir: 'up' });
    if (b === stop) break;
  }
  return out;
}

/** The same hops walked the other way (links and socket links in the opposite direction). */
export function reverseHops(hops: readonly Hop[]): Hop[] {
  const out: Hop[] = [];
  for (let i = hops.length - 1; i >= 0; i--) {
    const h = hops[i]!;
    if (h.kind === 'link') out.push({ kind: 'link', link: h.link, dir: h.dir === 'up' ? 'down' : 'up' });
    else if (h.kind === 'socket-link') out.push({ kind: 'socket-link', link: h.back, back: h.link });
    else if (h.kind !== 'iommu') out.push(h);
  }
  return out;
}

/** The bandwidth-model resource a hop consumes, or null (the IOMMU costs latency, not bandwidth). */
export function hopResource(h: Hop): BwResource | null {
  switch (h.kind) {
    case 'link':
      return h.dir === 'up' ? h.link.up : h.link.down;
    case 'switch':
      return h.sw.res;
    case 'root-complex':
      return h.rc.res;
    case 'socket-link':
      return h.link.res;
    case 'memory-controller':
      return h.mc.res;
    case 'iommu':
      return null;
  }
}

/** Add `n` bytes to the counters of every hop (a resource crossed twice counts twice). */
export function countHopBytes(hops: readonly Hop[], n: number): void {
  for (const h of hops) {
    switch (h.kind) {
      case 'link':
        if (h.dir === 'up') h.link.bytesUp += n;
        else h.link.bytesDown += n;
        break;
      case 'switch':
        h.sw.bytes += n;
        break;
      case 'root-complex':
        h.rc.bytes += n;
        break;
      case 'socket-link':
        h.link.bytes += n;
        break;
      case 'memory-controller':
        h.mc.bytes += n;
        break;
      case 'iommu':
        break;
    }
  }
}

/** A hop in words: "link 0000:00:01.0 up", "root complex pci0000:00", "memory node1". */
export function describeHop(h: Hop): string {
  switch (h.kind) {
    case 'link':
      return `${h.link.name} ${h.dir}`;
    case 'switch':
      return h.sw.name;
    case 'root-complex':
      return `root complex ${h.rc.name}`;
    case 'iommu':
      return `iommu ${h.rc.name}`;
    case 'socket-link':
      return `socket ${h.link.from}->${h.link.to}`;
    case 'memory-controller':
      return `memory node${h.mc.node}`;
  }
}

/** One-line description of a hop list, for explanations and test messages. */
export const describeHops = (hops: readonly Hop[]): string => hops.map(describeHop).join(' > ');
