// The P2P answer for a whole machine: every ordered pair of endpoints (held as a compact matrix, with
// per-pair results and kernel warnings produced on demand), the findings that explain the pairs that
// do not go peer to peer, and what evidence was missing.

import type { Machine, PciFunction } from '../hw/pci.js';
import type { AcsUnknownPolicy } from '../kernel/pci/p2pdma.js';
import type { KernelVersion } from '../kernel/profile.js';
import { type Finding, type PairVerdict, p2pFindings } from './p2p-findings.js';
import {
  computeP2pMatrix,
  endpointsOf,
  MAP_BUS_ADDR,
  mapCodeName,
  type P2pMatrix,
  prepareP2pTables,
} from './p2p-matrix.js';
import { type CapturingContext, capturingContext, type PairResult, pairIterator } from './p2p-pairs.js';

export interface P2pAnalysisOptions {
  readonly version: KernelVersion;
  /** Restrict the endpoints (rows and columns) to these. */
  readonly filter?: ((f: PciFunction) => boolean) | null | undefined;
  readonly acsUnknown?: AcsUnknownPolicy | undefined;
}

export interface Evidence {
  /** Functions whose ACS state is unknown. */
  readonly acsUnknown: readonly string[];
  /** Functions whose PCIe port type had to be inferred from the tree. */
  readonly portTypeInferred: readonly string[];
  /** Pairs whose verdict changes if unknown ACS states are in fact the opposite of what was assumed. */
  readonly pairsDependingOnAcs: number;
}

export interface P2pAnalysis {
  readonly machine: Machine;
  readonly version: KernelVersion;
  readonly endpoints: readonly PciFunction[];
  readonly matrix: P2pMatrix;
  /** The result for endpoints[i] -> endpoints[j], with the kernel's warning lines. */
  pair(i: number, j: number): PairResult;
  /** Every ordered pair, row by row (lazily). */
  pairs(): Iterable<PairResult>;
  readonly findings: readonly Finding[];
  readonly evidence: Evidence;
  readonly cc: CapturingContext;
}

/** Analyse every ordered pair of (filtered) endpoints. */
export function analyzeP2p(machine: Machine, opts: P2pAnalysisOptions): P2pAnalysis {
  const policy = opts.acsUnknown ?? 'assume-off';
  const portInferred = new Set<string>();
  const base = capturingContext(machine, opts.version, policy);
  const ctx = {
    ...base.ctx,
    onUnknown: (f: PciFunction, what: 'acs' | 'port-type') =>
      what === 'port-type' && portInferred.add(f.name),
  };
  const cc: CapturingContext = { ctx, capture: base.capture };
  const endpoints = endpointsOf(machine).filter((f) => !opts.filter || opts.filter(f));
  const it = pairIterator(cc);
  const matrix = computeP2pMatrix(it.tables, endpoints);
  const n = endpoints.length;
  const pair = (i: number, j: number): PairResult => it.pair(endpoints[i]!, endpoints[j]!);
  function* pairs(): Generator<PairResult> {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) yield pair(i, j);
  }
  // Findings need only the pairs the kernel does not take peer to peer, and no warning lines.
  function* notBus(): Generator<PairVerdict> {
    for (let k = 0; k < n * n; k++) {
      const code = matrix.mapCode[k]!;
      if (code !== MAP_BUS_ADDR) {
        yield {
          provider: endpoints[Math.floor(k / n)]!,
          client: endpoints[k % n]!,
          mapType: mapCodeName(code),
        };
      }
    }
  }
  const findings = p2pFindings(cc, notBus());
  const acsUnknown = machine.functions.filter((f) => f.acs.state === 'unknown').map((f) => f.name);
  let depending = 0;
  if (acsUnknown.length > 0) {
    const other = capturingContext(
      machine,
      opts.version,
      policy === 'assume-off' ? 'assume-on' : 'assume-off',
    );
    const m2 = computeP2pMatrix(prepareP2pTables(other.ctx), endpoints);
    for (let k = 0; k < n * n; k++) if (m2.mapCode[k] !== matrix.mapCode[k]) depending++;
  }
  return {
    machine,
    version: opts.version,
    endpoints,
    matrix,
    pair,
    pairs,
    findings,
    evidence: { acsUnknown, portTypeInferred: [...portInferred].sort(), pairsDependingOnAcs: depending },
    cc,
  };
}
