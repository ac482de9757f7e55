// The seam between the fabric and the simulation physics: the few operations of the event engine, the
// fluid bandwidth model and the link-rate arithmetic that the fabric uses. Mirrors no kernel file.
//
// `hw` may not import `sim` (test/tidy.test.ts: sim sits above hw), so the fabric declares what it
// needs here and whoever builds a fabric hands in the real objects, which satisfy these interfaces
// structurally:
//
//   buildFabric(machine, { flows: new FlowModel(engine), linkRate: pcieLinkRate })
//                                 ^ src/sim/flow.ts              ^ src/sim/link-rate.ts
//
// Nothing else crosses: the fabric never sees a FlowClass or the solver.

import type { Bytes } from '../addr.js';

/** The virtual clock and event queue (src/sim/engine.ts `Engine`). */
export interface SimClock {
  readonly nowNs: number;
  schedule(delayNs: number, fn: () => void): unknown;
}

/** A shared capacity in the bandwidth model (a `FlowResource`). */
export interface BwResource {
  readonly name: string;
  readonly capacityBytesPerNs: number;
  readonly latencyNs: number;
}

/** A transfer in the bandwidth model (a `Flow`). */
export interface BwFlow {
  readonly state: 'latency' | 'active' | 'done' | 'aborted';
  readonly startNs: number;
  readonly activeNs: number;
  readonly endNs: number;
}

export interface BwFlowOptions {
  readonly path: readonly BwResource[];
  readonly size: Bytes;
  readonly capBytesPerNs?: number;
  readonly extraLatencyNs?: number;
  onComplete?(f: BwFlow): void;
  readonly label?: string;
}

/** The fluid max-min bandwidth model (src/sim/flow.ts `FlowModel`). */
export interface BandwidthModel {
  readonly engine: SimClock;
  addResource(name: string, capacityBytesPerNs: number, latencyNs?: number): BwResource;
  startFlow(o: BwFlowOptions): BwFlow;
  rateOf(f: BwFlow): number;
}

export type PcieGenNumber = 1 | 2 | 3 | 4 | 5 | 6;

/** What the fabric reads of a link rate (src/sim/link-rate.ts `LinkRate`). */
export interface LinkRateInfo {
  readonly rawGBps: number;
  readonly effectiveGBps: number;
  readonly packetEfficiency: number;
}

/** Per-direction rate of a PCIe link (src/sim/link-rate.ts `pcieLinkRate`). */
export type LinkRateFn = (gen: PcieGenNumber, width: number) => LinkRateInfo;

/** What a fabric is built with. */
export interface FabricSim {
  readonly flows: BandwidthModel;
  readonly linkRate: LinkRateFn;
}
