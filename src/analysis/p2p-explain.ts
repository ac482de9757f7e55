// `dmasim p2p --explain A B`: the kernel's calc_map_type_and_dist() walk for one pair, step by step,
// in words. The steps are derived with the same primitives the decision uses, and the final verdict is
// checked against calcMapTypeAndDist itself, so the explanation cannot drift from the model.

import type { PciFunction } from '../hw/pci.js';
import { PCI_ACS_REDIR_MASK } from '../hw/pci-regs.js';
import {
  calcMapTypeAndDist,
  pciBridgeHasAcsRedir,
  pciP2pdmaDistance,
  pciUpstreamBridge,
} from '../kernel/pci/p2pdma.js';
import { hostBridgeReasons } from './p2p-findings.js';
import { type CapturingContext, verboseWarnings } from './p2p-pairs.js';

export interface Explanation {
  readonly steps: readonly string[];
  readonly mapType: 'bus-addr' | 'thru-host-bridge' | 'not-supported';
  readonly distance: number;
  readonly kernelLog: readonly string[];
}

const chainOf = (f: PciFunction): PciFunction[] => {
  const out: PciFunction[] = [];
  for (let x: PciFunction | null = f; x; x = pciUpstreamBridge(x)) out.push(x);
  return out;
};

function acsWord(cc: CapturingContext, f: PciFunction): string {
  const acs = f.acs;
  if (acs.state === 'absent') return 'no ACS capability';
  if (acs.state === 'unknown')
    return `ACS unknown (${acs.reason}); assumed ${cc.ctx.acsUnknown === 'assume-on' ? 'redirecting' : 'not redirecting'}`;
  const hex = `0x${acs.ctrl.toString(16).padStart(4, '0')}`;
  return acs.ctrl & PCI_ACS_REDIR_MASK
    ? `ACS ctrl ${hex}: RR/CR/EC set, redirect`
    : `ACS ctrl ${hex}: no redirect bits`;
}

/** Explain the decision for provider -> client. */
export function explainPair(cc: CapturingContext, provider: PciFunction, client: PciFunction): Explanation {
  const steps: string[] = [];
  const pc = chainOf(provider);
  const cl = chainOf(client);
  steps.push(
    `provider chain (pci_upstream_bridge): ${pc.map((f) => f.name).join(' -> ')} -> host bridge ${provider.hostBridge.name}`,
  );
  steps.push(
    `client chain:                        ${cl.map((f) => f.name).join(' -> ')} -> host bridge ${client.hostBridge.name}`,
  );
  let common: PciFunction | null = null;
  let distA = 0;
  let distB = 0;
  const acs: string[] = [];
  for (const a of pc) {
    const redir = pciBridgeHasAcsRedir(cc.ctx, a);
    if (redir) acs.push(a.name);
    const j = cl.indexOf(a);
    steps.push(
      `dist_a=${distA}: a = ${a.name}: ${acsWord(cc, a)}; ${j >= 0 ? `found on the client chain after ${j} hop(s): common upstream device` : 'not on the client chain'}`,
    );
    if (j >= 0) {
      common = a;
      distB = j;
      break;
    }
    distA++;
  }
  if (common) {
    for (const b of cl.slice(0, distB)) {
      const redir = pciBridgeHasAcsRedir(cc.ctx, b);
      if (redir) acs.push(b.name);
      steps.push(`client side below the common device: ${b.name}: ${acsWord(cc, b)}`);
    }
    steps.push(`distance = dist_a + dist_b = ${distA} + ${distB} = ${distA + distB}`);
    steps.push(
      acs.length === 0
        ? 'no ACS redirect on the path: BUS_ADDR (the switch/bridge routes peer to peer)'
        : `ACS redirect on ${acs.join(', ')}: the path goes through the host bridge`,
    );
  } else {
    distB = cl.length;
    steps.push(
      `no common upstream device: distance = ${pc.length} + ${cl.length} = ${pc.length + distB} (both full chains)`,
    );
    distA = pc.length;
  }
  const r = calcMapTypeAndDist(cc.ctx, provider, client, false);
  if (r.mapType !== 'bus-addr') {
    const hb = hostBridgeReasons(cc, provider.hostBridge, client.hostBridge);
    for (const w of hb.why) steps.push(`host-bridge rule: ${w}`);
  }
  if (r.dist !== distA + distB || (r.common === null) !== (common === null)) {
    throw new Error(`explain: walk disagrees with calcMapTypeAndDist for ${provider.name} -> ${client.name}`);
  }
  const distance = pciP2pdmaDistance(cc.ctx, provider, client, false);
  steps.push(`result: ${r.mapType.toUpperCase().replaceAll('-', '_')}, pci_p2pdma_distance() = ${distance}`);
  return { steps, mapType: r.mapType, distance, kernelLog: verboseWarnings(cc, provider, client) };
}
