// Per-pair P2P results as the kernel reports them: map type, pci_p2pdma_distance(), and the lines a
// verbose check logs. Map types and distances come from the fast tables; the warning lines come from
// the faithful kernel walk, run only for pairs where the kernel prints anything (BUS_ADDR pairs, and
// host-bridge pairs without ACS redirect on a Zen CPU or whitelisted bridge, print nothing).

import type { Machine, PciFunction } from '../hw/pci.js';
import {
  type AcsUnknownPolicy,
  calcMapTypeAndDist,
  createP2pdmaContext,
  type P2pdmaContext,
  pciP2pdmaDistanceMany,
} from '../kernel/pci/p2pdma.js';
import type { KernelVersion } from '../kernel/profile.js';
import {
  MAP_BUS_ADDR,
  MAP_NOT_SUPPORTED,
  mapCodeName,
  type P2pTables,
  pairFromTables,
  prepareP2pTables,
} from './p2p-matrix.js';

export interface PairResult {
  readonly provider: PciFunction;
  readonly client: PciFunction;
  readonly mapType: 'bus-addr' | 'thru-host-bridge' | 'not-supported';
  /** What pci_p2pdma_distance() returns: the hop count, or -1 when not supported. */
  readonly distance: number;
  /** The walk's hop count even when not supported. */
  readonly hops: number;
  readonly warnings: readonly string[];
}

/** A context whose log can be captured per call. */
export interface CapturingContext {
  readonly ctx: P2pdmaContext;
  capture<T>(fn: () => T): { value: T; lines: string[] };
}

export function capturingContext(
  machine: Machine,
  version: KernelVersion,
  acsUnknown: AcsUnknownPolicy = 'assume-off',
): CapturingContext {
  let sink: string[] = [];
  const ctx = createP2pdmaContext(machine, version, { log: (l) => sink.push(l), acsUnknown });
  return {
    ctx,
    capture<T>(fn: () => T) {
      sink = [];
      const value = fn();
      const lines = sink;
      sink = [];
      return { value, lines };
    },
  };
}

/** The lines `pci_p2pdma_distance_many(provider, [client], 1, verbose=true)` logs. */
export function verboseWarnings(cc: CapturingContext, provider: PciFunction, client: PciFunction): string[] {
  return cc.capture(() => pciP2pdmaDistanceMany(cc.ctx, provider, [client], true)).lines;
}

export interface PairIterator {
  readonly tables: P2pTables;
  pair(provider: PciFunction, client: PciFunction): PairResult;
}

/** Results for single pairs, fast, with the kernel's warning lines where there are any. */
export function pairIterator(cc: CapturingContext): PairIterator {
  const tables = prepareP2pTables(cc.ctx);
  const out = new Int32Array(1);
  return {
    tables,
    pair(provider, client) {
      const code = pairFromTables(tables, provider.index, client.index, out);
      const hops = out[0]!;
      let warnings: string[] = [];
      // Only refused paths and ACS-redirect paths print; a host-bridge path is silent unless ACS
      // redirect sent it there, which only the walk can tell.
      if (
        code === MAP_NOT_SUPPORTED ||
        (code !== MAP_BUS_ADDR && calcMapTypeAndDist(cc.ctx, provider, client, false).acsRedirect.length > 0)
      )
        warnings = verboseWarnings(cc, provider, client);
      return {
        provider,
        client,
        mapType: mapCodeName(code),
        distance: code === MAP_NOT_SUPPORTED ? -1 : hops,
        hops,
        warnings,
      };
    },
  };
}
