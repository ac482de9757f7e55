// Why a pair goes through the host bridge or is refused, and the smallest change that would fix it.
//
// Pairs are grouped by cause so that a 16-GPU machine gives a handful of findings, not hundreds:
//   acs-redirect         a common upstream device exists, but ACS redirect on the path sends peer
//                        TLPs up to the root complex: the fix is the exact pci=disable_acs_redir= list
//   no-common-bridge     the devices hang off different root ports or host bridges: the host-bridge
//                        rule decides (AMD Zen CPU, or whitelisted host bridge devices)
// Each finding names its pairs, says why in the kernel's terms, and lists the fixes that would work.

import { type HostBridge, type PciFunction, pciIdText } from '../hw/pci.js';
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
import type { CapturingContext } from './p2p-pairs.js';

/** What findings need of a pair: the two devices and the kernel's map type. */
export interface PairVerdict {
  readonly provider: PciFunction;
  readonly client: PciFunction;
  readonly mapType: 'bus-addr' | 'thru-host-bridge' | 'not-supported';
}

export type FindingKind = 'acs-redirect' | 'no-common-bridge';

export interface Finding {
  readonly kind: FindingKind;
  /** The outcome the kernel reaches for these pairs. */
  readonly mapType: 'thru-host-bridge' | 'not-supported';
  readonly pairs: readonly (readonly [string, string])[];
  readonly why: readonly string[];
  readonly fixes: readonly string[];
}

const devId = pciIdText;

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
    return `move ${client.name} into a slot below switch ${sw.name} (beside ${provider.name}): the path then stays inside the switch`;
  const sw2 = nearestSwitch(client);
  if (sw2) return `move ${provider.name} into a slot below switch ${sw2.name} (beside ${client.name})`;
  return `put ${provider.name} and ${client.name} behind one PCIe switch (or two functions of one device): the path then stays below the host bridge`;
}

interface Group {
  kind: FindingKind;
  mapType: Finding['mapType'];
  pairs: [string, string][];
  why: string[];
  fixes: string[];
  /** ACS groups: the redirecting ports seen across the group's pairs. */
  acsPorts?: Set<string>;
  common?: string;
  example?: [PciFunction, PciFunction];
}

const ORDER: Record<string, number> = {
  'not-supported|no-common-bridge': 0,
  'not-supported|acs-redirect': 1,
  'thru-host-bridge|acs-redirect': 2,
  'thru-host-bridge|no-common-bridge': 3,
};

/**
 * Group the pairs that do not go peer to peer by cause: one finding per switch whose ACS redirect
 * intervenes (with the union `pci=disable_acs_redir=` list that fixes every pair below it), one per
 * reason the host-bridge rule refuses, and one for the pairs the host bridge carries.
 */
export function p2pFindings(cc: CapturingContext, pairs: Iterable<PairVerdict>): Finding[] {
  const groups = new Map<string, Group>();
  // The host-bridge reasons depend only on the two host bridges: work them out once per pair of them.
  const reasons = new Map<string, ReturnType<typeof hostBridgeReasons>>();
  const reasonsFor = (ha: HostBridge, hb: HostBridge): ReturnType<typeof hostBridgeReasons> => {
    const key = `${ha.index},${hb.index}`;
    let r = reasons.get(key);
    if (!r) {
      r = hostBridgeReasons(cc, ha, hb);
      reasons.set(key, r);
    }
    return r;
  };
  for (const r of pairs) {
    if (r.mapType === 'bus-addr' || r.provider === r.client) continue;
    const w = calcMapTypeAndDist(cc.ctx, r.provider, r.client, false);
    const hbr = reasonsFor(r.provider.hostBridge, r.client.hostBridge);
    const acs = w.common !== null && w.acsRedirect.length > 0;
    const key = acs
      ? `acs|${w.common!.name}|${r.mapType}|${hbr.why.join('|')}`
      : `hb|${r.mapType}|${hbr.why.join('|')}`;
    let g = groups.get(key);
    if (!g) {
      g = acs
        ? {
            kind: 'acs-redirect',
            mapType: r.mapType,
            pairs: [],
            why: hbr.why,
            fixes: hbr.fixes,
            acsPorts: new Set(),
            common: w.common!.name,
          }
        : {
            kind: 'no-common-bridge',
            mapType: r.mapType,
            pairs: [],
            why: hbr.why,
            fixes: hbr.fixes,
            example: [r.provider, r.client],
          };
      groups.set(key, g);
    }
    for (const f of w.acsRedirect) g.acsPorts?.add(f.name);
    g.pairs.push([r.provider.name, r.client.name]);
  }
  const out = [...groups.values()].map((g): Finding => {
    if (g.kind === 'acs-redirect') {
      const ports = [...g.acsPorts!].sort();
      return {
        kind: g.kind,
        mapType: g.mapType,
        pairs: g.pairs,
        why: [
          `${g.common} is a common upstream device, but ACS redirect (RR/CR/EC) is set on ${ports.join(', ')}: peer requests are sent up to the root complex instead of across`,
          ...g.why,
        ],
        fixes: [
          `boot with pci=disable_acs_redir=${ports.join(';')} (every pair here then goes peer to peer below ${g.common}; this weakens IOMMU isolation between the devices below those ports)`,
          ...g.fixes,
        ],
      };
    }
    const [p, c] = g.example!;
    const move = slotMoveFix(p, c);
    return {
      kind: g.kind,
      mapType: g.mapType,
      pairs: g.pairs,
      why: ['no common upstream bridge: the path goes up through the host bridge(s)', ...g.why],
      fixes:
        g.mapType === 'not-supported'
          ? [...g.fixes, `for a peer-to-peer path below a switch, e.g. ${move}`]
          : [`for a direct path that skips the root complex, e.g. ${move}`],
    };
  });
  return out.sort(
    (a, b) =>
      ORDER[`${a.mapType}|${a.kind}`]! - ORDER[`${b.mapType}|${b.kind}`]! || b.pairs.length - a.pairs.length,
  );
}
