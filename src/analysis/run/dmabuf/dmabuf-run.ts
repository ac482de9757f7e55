// `dmasim run` for the dma-buf scenarios: pick the run of the scenario's kind. Mirrors no kernel file.

import type { Machine } from '../../../hw/pci.js';
import { type DmabufEvictResult, runDmabufEvict } from './dmabuf-evict.js';
import { type DmabufRunOptions, runConfig } from './dmabuf-run-common.js';
import type { DmabufScenario } from './dmabuf-scenario-file.js';
import { runVfioRevoke, type VfioRevokeResult } from './vfio-revoke.js';

export type DmabufRunResult = DmabufEvictResult | VfioRevokeResult;

/**
 * Run a dma-buf scenario on `machine` with the command line's overrides.
 * @returns the result; throws TopologyError for bad input (an unknown device, a setting the scenario
 *   cannot run with), anything else only on a model bug.
 */
export function runDmabufScenario(
  machine: Machine,
  sc: DmabufScenario,
  o: DmabufRunOptions = {},
): DmabufRunResult {
  const cfg = runConfig(sc, o, machine);
  return sc.doc.kind === 'dmabuf-evict' ? runDmabufEvict(machine, sc, cfg) : runVfioRevoke(machine, sc, cfg);
}

/** Did the run verify and meet every expectation? */
export const dmabufRunGood = (r: DmabufRunResult): boolean => r.verified && r.expectations.every((x) => x.ok);
