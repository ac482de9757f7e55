// Why a pair goes through the host bridge or is refused, and the smallest change that would fix it.
//
// Pairs are grouped by cause so that a 16-GPU machine gives a handful of findings, not hundreds:
//   acs-redirect         a common upstream device exists, but ACS redirect on the path sends peer
//                        TLPs up to the root complex: the fix is the exact pci=disable_acs_redir= list
//   no-common-bridge     the devices hang off different root ports or host bridges: the host-bridge
//                        rule decides (AMD Zen CPU, or whitelisted host bridge devices)
// Each finding names its pairs, says why in the kernel's terms, and lists the fixes that would work.

import type { HostBridge, PciFunction } from '../hw/pci.js';
import {
  calcMapTypeAndDist,
  cpuSupportsP2pdma,
  pciHostBridgeDev,
  pciUpstreamBridge,
} from '../kernel/pci/p2pdma.js';
import {
  firstVersionWhitelisting,
  REQ_SAME_HOST_BRIDGE,
  whitelistLookup,
} from '../kernel/pci/p2pdma-whitelist.js';
import type { CapturingContext, PairResult } from './p2p-pairs.js';

export type FindingKind = 'acs-redirect' | 'no-common-bridge';

export interface Finding {
  readonly kind: FindingKind;
  /** The outcome the kernel reaches for these pairs. */
  readonly mapType: 'thru-host-bridge' | 'not-supported';
  readonly pairs: readonly (readonly [string, string])[];
  readonly why: readonly string[];
  readonly fixes: readonly string[];
}

const id4 = (v: number): string => v.toString(16).padStart(4, '0');
const devId = (f: PciFunction): string => `${id4(f.vendor)}:${id4(f.device)}`;

/** Why the host-bridge rule refuses (or allows) a path between two host bridges. */
export function hostBridgeReasons(
  cc: CapturingContext,
  ha: HostBridge,
  hb: HostBridge,
): { ok: boolean; why: string[]; fixes: string[] } {
  const { ctx } = cc;
  const cpu = ctx.machine.cpu;
  if (cpuSupportsP2pdma(cpu)) {
    return {
      ok: true,
      why: [
        `the CPU (${cpu?.modelName || 'AMD'}, family 0x${cpu?.family.toString(16)}) is AMD Zen or newer: Linux allows P2P through its host bridges`,
      ],
      fixes: [],
    };
  }
  const why: string[] = [];
  const fixes: string[] = [];
  why.push(
    cpu
      ? `the CPU is ${cpu.vendorId} family 0x${cpu.family.toString(16)} (${cpu.modelName || cpu.arch}): not AMD Zen (family >= 0x17), so the host bridge must be whitelisted`
      : 'the CPU is unknown: assumed not AMD Zen, so the host bridge must be whitelisted',
  );
  let ok = true;
  const same = ha === hb;
  for (const h of same ? [ha] : [ha, hb]) {
    const root = pciHostBridgeDev(ctx, h);
    if (!root) {
      const first = h.rootFunctions[0];
      why.push(
        first
          ? `host bridge ${h.name}: its root bus has no 00.0 function and its first device ${first.name} is not a root port, so there is no device to whitelist`
          : `host bridge ${h.name}: its root bus has no functions, so there is no device to whitelist`,
      );
      ok = false;
      continue;
    }
    const entry = whitelistLookup(ctx.version, root.vendor, root.device);
    if (!entry) {
      why.push(
        `host bridge ${h.name}: its device ${root.name} (${devId(root)}) is not in the P2PDMA whitelist of Linux ${ctx.version}`,
      );
      if (firstVersionWhitelisting(root.vendor, root.device) === 'newest' && ctx.version === '6.1') {
        fixes.push(`run a newer kernel: ${devId(root)} is whitelisted in current mainline (not in 6.1)`);
      }
      ok = false;
    } else if (entry.flags & REQ_SAME_HOST_BRIDGE && !same) {
      why.push(
        `host bridge ${h.name}: ${devId(root)} (${entry.what}) is whitelisted only for traffic within one host bridge`,
      );
      ok = false;
    }
  }
  if (ok) why.push('the host bridges are whitelisted: Linux allows P2P through them');
  return { ok, why, fixes };
}

/** The lowest bridge on f's chain that has more than one downstream slot (a switch), if any. */
function nearestSwitch(f: PciFunction): PciFunction | null {
  for (let b = pciUpstreamBridge(f); b; b = pciUpstreamBridge(b)) {
    const up = pciUpstreamBridge(b);
    if (up && up.children.filter((c) => c.headerType === 1).length > 1) return up;
  }
  return null;
}

function slotMoveFix(provider: PciFunction, client: PciFunction): string {
  const sw = nearestSwitch(provider);
  if (sw)
    return `move ${client.name} into a free slot below switch ${sw.name} (which already holds ${provider.name}): the path then stays inside the switch`;
  const sw2 = nearestSwitch(client);
  if (sw2)
    return `move ${provider.name} into a free slot below switch ${sw2.name} (which already holds ${client.name})`;
  return `put ${provider.name} and ${client.name} behind one PCIe switch (or two functions of one device): the path then stays below the host bridge`;
}

/** Group the non-BUS_ADDR pairs by cause, with reasons and fixes. */
export function p2pFindings(cc: CapturingContext, pairs: Iterable<PairResult>): Finding[] {
  const groups = new Map<
    string,
    {
      kind: FindingKind;
      mapType: Finding['mapType'];
      pairs: [string, string][];
      why: string[];
      fixes: string[];
    }
  >();
  for (const r of pairs) {
    if (r.mapType === 'bus-addr' || r.provider === r.client) continue;
    const w = calcMapTypeAndDist(cc.ctx, r.provider, r.client, false);
    const mapType = r.mapType;
    const hbr = hostBridgeReasons(cc, r.provider.hostBridge, r.client.hostBridge);
    let key: string;
    let make: () => { kind: FindingKind; why: string[]; fixes: string[] };
    if (w.common && w.acsRedirect.length > 0) {
      const list = w.acsRedirect.map((f) => f.name);
      key = `acs|${list.join(';')}|${mapType}|${hbr.why.join('|')}`;
      make = () => ({
        kind: 'acs-redirect',
        why: [
          `${w.common!.name} is a common upstream device, but ACS redirect (RR/CR) is set on ${list.join(', ')}: peer requests are sent up to the root complex instead of across`,
          ...hbr.why,
        ],
        fixes: [
          `boot with pci=disable_acs_redir=${list.join(';')} (P2P then stays below ${w.common!.name}; note it weakens IOMMU isolation between the devices below those ports)`,
          ...hbr.fixes,
        ],
      });
    } else {
      key = `hb|${r.provider.hostBridge.name}|${r.client.hostBridge.name}|${mapType}`;
      make = () => ({
        kind: 'no-common-bridge',
        why: [
          r.provider.hostBridge === r.client.hostBridge
            ? `no common upstream bridge: the path goes up to host bridge ${r.provider.hostBridge.name} and down again`
            : `no common upstream bridge: the path crosses host bridges ${r.provider.hostBridge.name} and ${r.client.hostBridge.name}`,
          ...hbr.why,
        ],
        fixes:
          mapType === 'not-supported'
            ? [...hbr.fixes, slotMoveFix(r.provider, r.client)]
            : [slotMoveFix(r.provider, r.client)],
      });
    }
    let g = groups.get(key);
    if (!g) {
      g = { ...make(), mapType, pairs: [] };
      groups.set(key, g);
    }
    g.pairs.push([r.provider.name, r.client.name]);
  }
  return [...groups.values()];
}
