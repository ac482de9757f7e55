// The P2P answer for a whole machine: every ordered pair of endpoints, the findings that explain the
// pairs that do not go peer to peer, and what evidence was missing.

import type { Machine, PciFunction } from '../hw/pci.js';
import type { AcsUnknownPolicy } from '../kernel/pci/p2pdma.js';
import type { KernelVersion } from '../kernel/profile.js';
import { type Finding, p2pFindings } from './p2p-findings.js';
import { endpointsOf, mapCodeName, pairFromTables, prepareP2pTables } from './p2p-matrix.js';
import { type CapturingContext, capturingContext, type PairResult, pairIterator } from './p2p-pairs.js';

export interface P2pAnalysisOptions {
  readonly version: KernelVersion;
  /** Restrict the endpoints (rows and columns) to these. */
  readonly filter?: ((f: PciFunction) => boolean) | null | undefined;
  readonly acsUnknown?: AcsUnknownPolicy | undefined;
}

export interface Evidence {
  /** Functions whose ACS state was consulted but unknown. */
  readonly acsUnknown: readonly string[];
  /** Functions whose PCIe port type had to be inferred from the tree. */
  readonly portTypeInferred: readonly string[];
  /** Pairs whose verdict changes if unknown ACS states are in fact redirecting. */
  readonly pairsDependingOnAcs: number;
}

export interface P2pAnalysis {
  readonly machine: Machine;
  readonly version: KernelVersion;
  readonly endpoints: readonly PciFunction[];
  readonly pairs: readonly PairResult[];
  readonly findings: readonly Finding[];
  readonly evidence: Evidence;
  readonly cc: CapturingContext;
}

/** Analyse every ordered pair of (filtered) endpoints. */
export function analyzeP2p(machine: Machine, opts: P2pAnalysisOptions): P2pAnalysis {
  const acsUnknown = new Set<string>();
  const portInferred = new Set<string>();
  const cc = capturingContext(machine, opts.version, opts.acsUnknown ?? 'assume-off');
  const note = (f: PciFunction, what: 'acs' | 'port-type'): void => {
    (what === 'acs' ? acsUnknown : portInferred).add(f.name);
  };
  const ctx = { ...cc.ctx, onUnknown: note };
  const cc2: CapturingContext = { ctx, capture: cc.capture };
  const endpoints = endpointsOf(machine).filter((f) => !opts.filter || opts.filter(f));
  const it = pairIterator(cc2);
  const pairs: PairResult[] = [];
  for (const p of endpoints) for (const c of endpoints) pairs.push(it.pair(p, c));
  const findings = p2pFindings(cc2, pairs);
  let depending = 0;
  if (acsUnknown.size > 0) {
    // Re-run with the opposite assumption and count the pairs whose verdict moves.
    const other = capturingContext(
      machine,
      opts.version,
      (opts.acsUnknown ?? 'assume-off') === 'assume-off' ? 'assume-on' : 'assume-off',
    );
    const t2 = prepareP2pTables(other.ctx);
    const out = new Int32Array(1);
    for (const r of pairs) {
      const code = pairFromTables(t2, r.provider.index, r.client.index, out);
      if (mapCodeName(code) !== r.mapType) depending++;
    }
  }
  return {
    machine,
    version: opts.version,
    endpoints,
    pairs,
    findings,
    evidence: {
      acsUnknown: [...acsUnknown].sort(),
      portTypeInferred: [...portInferred].sort(),
      pairsDependingOnAcs: depending,
    },
    cc: cc2,
  };
}
