// The P2PDMA decision of drivers/pci/p2pdma.c: can `client` DMA to memory of `provider`, by which
// path, and at what distance.
//
// Both devices' chains are walked upwards with pci_upstream_bridge(); the first device the chains
// share is the common upstream device. The distance is the number of hops from each side up to it:
//
//      [common upstream device]             provider -> ... -> common : dist_a hops
//         /                 \               client   -> ... -> common : dist_b hops
//   [bridge]             [bridge]           distance = dist_a + dist_b
//      |                    |               (no common device: the full chain lengths, through
//   provider             client              the host bridge)
//
// Every device checked on the way (the provider's chain up to and including the common device, the
// client's chain below it) is tested for ACS redirect (RR|CR|EC). A common device with no redirect on
// the path gives BUS_ADDR: the switch routes TLPs peer to peer. Redirect, or no common device, means
// the traffic goes through the host bridge, allowed only on AMD Zen CPUs or whitelisted host bridges.

import { mapTypesIdx } from '../../hw/bdf.js';
import { type CpuInfo, type HostBridge, type Machine, type PciFunction, pciIdText } from '../../hw/pci.js';
import { PCI_ACS_REDIR_MASK } from '../../hw/pci-regs.js';
import type { GenPool } from '../mm/genalloc.js';
import type { PercpuRef } from '../mm/percpu-ref.js';
import { devName } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import type { P2pdmaDevres, P2pdmaProvider } from './p2pdma-provider.js';
import { REQ_SAME_HOST_BRIDGE, whitelistLookup } from './p2pdma-whitelist.js';

export type P2pdmaMapType = 'unknown' | 'none' | 'not-supported' | 'bus-addr' | 'thru-host-bridge';

/** `enum pci_p2pdma_map_type` values per profile (6.1 has no MAP_NONE; newest inserts it at 1). */
const MAP_TYPE_VALUES: Readonly<Record<KernelVersion, Readonly<Record<P2pdmaMapType, number | null>>>> = {
  '6.1': { unknown: 0, none: null, 'not-supported': 1, 'bus-addr': 2, 'thru-host-bridge': 3 },
  newest: { unknown: 0, none: 1, 'not-supported': 2, 'bus-addr': 3, 'thru-host-bridge': 4 },
};

/** The enum's numeric value in a profile. @throws for PCI_P2PDMA_MAP_NONE in 6.1, where it does not exist. */
export function p2pdmaMapTypeValue(version: KernelVersion, t: P2pdmaMapType): number {
  const v = MAP_TYPE_VALUES[version][t];
  if (v === null) throw new Error(`PCI_P2PDMA_MAP_NONE does not exist in ${version}`);
  return v;
}

/** Per-provider p2pdma state (`struct pci_p2pdma`): publication and the map-type cache. */
export interface P2pdmaState {
  published: boolean;
  /** `map_types` xarray: client index -> map type; stores every result, never invalidated. */
  readonly mapTypes: Map<number, P2pdmaMapType>;
  /** `pool` (p2pdma-provider.ts): the gen_pool of the BAR memory; absent or null until memory is added. */
  pool?: GenPool<PercpuRef> | null | undefined;
  /** newest `mem[PCI_STD_NUM_BARS]`: per-BAR providers from pcim_p2pdma_init(); absent in 6.1. */
  mem?: readonly (P2pdmaProvider | null)[] | undefined;
  /** Driver-binding bookkeeping of p2pdma-provider.ts (pagemaps added, user mappings, teardown). */
  devres?: P2pdmaDevres | undefined;
}

/** How the model treats an ACS state a reader could not see. */
export type AcsUnknownPolicy = 'assume-off' | 'assume-on';

/** The kernel world the decision runs in: one machine booted with one kernel profile. */
export interface P2pdmaContext {
  readonly machine: Machine;
  readonly version: KernelVersion;
  /** Receives kernel log lines ("<driver or pci> <BDF>: <text>"). */
  readonly log: (line: string) => void;
  /** p2pdma state of providers (`pdev->p2pdma`), keyed by function index. */
  readonly p2pdma: Map<number, P2pdmaState>;
  readonly acsUnknown: AcsUnknownPolicy;
  /** Called whenever the decision consulted something unknown (ACS, port type); for evidence reports. */
  readonly onUnknown?: ((f: PciFunction, what: 'acs' | 'port-type') => void) | undefined;
}

export function createP2pdmaContext(
  machine: Machine,
  version: KernelVersion,
  opts: Partial<Pick<P2pdmaContext, 'log' | 'acsUnknown' | 'onUnknown'>> = {},
): P2pdmaContext {
  return {
    machine,
    version,
    log: opts.log ?? (() => {}),
    p2pdma: new Map(),
    acsUnknown: opts.acsUnknown ?? 'assume-off',
    onUnknown: opts.onUnknown,
  };
}

const pciWarn = (ctx: P2pdmaContext, f: PciFunction, text: string): void => ctx.log(`${devName(f)}: ${text}`);

/** `pci_physfn()`: a VF's physical function, else the function itself. */
export const pciPhysfn = (f: PciFunction): PciFunction => f.physfn ?? f;

/** `pci_upstream_bridge()`: the bridge above the function (a VF uses its PF's); null on a root bus. */
export const pciUpstreamBridge = (f: PciFunction): PciFunction | null => pciPhysfn(f).bridge;

/**
 * `pci_bridge_has_acs_redir()`: does the function's ACS control have RR, CR or EC set?
 * A function without an ACS capability never redirects. Unknown state follows the context's policy.
 */
export function pciBridgeHasAcsRedir(ctx: P2pdmaContext, f: PciFunction): boolean {
  const acs = f.acs;
  if (acs.state === 'absent') return false;
  if (acs.state === 'present') return (acs.ctrl & PCI_ACS_REDIR_MASK) !== 0;
  ctx.onUnknown?.(f, 'acs');
  return ctx.acsUnknown === 'assume-on';
}

/**
 * `cpu_supports_p2pdma()`: x86 only; true iff the boot CPU is AMD with family >= 0x17 (Zen or newer).
 * The kernel tests X86_VENDOR_AMD, which only the vendor string "AuthenticAMD" selects: a real 6.1 boot
 * with "AMDisbetter!" logs "vendor_id 'AMDisbetter!' unknown" and refuses; Hygon is another vendor.
 */
export function cpuSupportsP2pdma(cpu: CpuInfo | null): boolean {
  if (!cpu || !/^(x86_64|i[3-6]86|x86)$/.test(cpu.arch)) return false;
  return cpu.vendorId === 'AuthenticAMD' && cpu.family >= 0x17;
}

/** Is this function a PCIe root port? Unknown port types are inferred from the tree (a bridge on a root bus). */
function isRootPort(ctx: P2pdmaContext, f: PciFunction): boolean {
  if (typeof f.portType === 'string') return f.portType === 'root-port';
  ctx.onUnknown?.(f, 'port-type');
  return f.bridge === null && (f.headerType === 1 || ((f.classCode >> 8) & 0xffff) === 0x0604);
}

/**
 * `pci_host_bridge_dev()`: the first device on the host bridge's root bus, if it is at devfn 00.0 or a
 * root port; null otherwise (then the host bridge cannot be whitelisted).
 */
export function pciHostBridgeDev(ctx: P2pdmaContext, host: HostBridge): PciFunction | null {
  const root = host.rootFunctions[0];
  if (!root) return null;
  if (root.addr.devfn === 0) return root;
  return isRootPort(ctx, root) ? root : null;
}

/** `__host_bridge_whitelist()`: is this host bridge whitelisted (for same- or cross-bridge traffic)? */
function hostBridgeWhitelistOne(
  ctx: P2pdmaContext,
  host: HostBridge,
  sameHostBridge: boolean,
  warn: boolean,
): boolean {
  const root = pciHostBridgeDev(ctx, host);
  if (!root) return false;
  const entry = whitelistLookup(ctx.version, root.vendor, root.device);
  if (entry) return !(entry.flags & REQ_SAME_HOST_BRIDGE && !sameHostBridge);
  if (warn) {
    pciWarn(ctx, root, `Host bridge not in P2PDMA whitelist: ${pciIdText(root)}`);
  }
  return false;
}

/** `host_bridge_whitelist()`: both devices' host bridges must pass (the same one with REQ_SAME allowed). */
export function hostBridgeWhitelist(
  ctx: P2pdmaContext,
  a: PciFunction,
  b: PciFunction,
  warn: boolean,
): boolean {
  const ha = a.hostBridge;
  const hb = b.hostBridge;
  if (ha === hb) return hostBridgeWhitelistOne(ctx, ha, true, warn);
  return hostBridgeWhitelistOne(ctx, ha, false, warn) && hostBridgeWhitelistOne(ctx, hb, false, warn);
}

/** The kernel prints the ACS list from a 128-byte seq_buf: at most 127 characters survive. */
const ACS_LIST_BUF = 128;
function acsListText(names: readonly string[]): string {
  const full = names.map((n) => `${n};`).join('');
  return full.length < ACS_LIST_BUF ? full.slice(0, -1) : full.slice(0, ACS_LIST_BUF - 1);
}

export interface MapTypeAndDist {
  readonly mapType: 'not-supported' | 'bus-addr' | 'thru-host-bridge';
  /** `*dist` as computed (hops), also for NOT_SUPPORTED. */
  readonly dist: number;
  /** The common upstream device, if the chains meet below the host bridge. */
  readonly common: PciFunction | null;
  /** Devices whose ACS redirect was found on the path, in the order the kernel lists them. */
  readonly acsRedirect: readonly PciFunction[];
  /** True when the host-bridge rule decided (ACS redirect or no common device). */
  readonly viaHostBridge: boolean;
}

/** Walk provider's chain outwards, client's chain inwards, until they meet (the kernel's two loops). */
function findCommon(ctx: P2pdmaContext, provider: PciFunction, client: PciFunction, acs: PciFunction[]) {
  let distA = 0;
  let distB = 0;
  for (let a: PciFunction | null = provider; a; a = pciUpstreamBridge(a), distA++) {
    distB = 0;
    if (pciBridgeHasAcsRedir(ctx, a)) acs.push(a);
    for (let bb: PciFunction | null = client; bb; bb = pciUpstreamBridge(bb), distB++) {
      if (bb === a) return { common: a, distA, distB };
    }
  }
  return { common: null, distA, distB };
}

/**
 * `calc_map_type_and_dist()`: the map type and distance between provider and client. With `verbose`
 * it logs the kernel's warnings; it stores the result in the provider's map-type cache if the
 * provider has p2pdma state.
 */
export function calcMapTypeAndDist(
  ctx: P2pdmaContext,
  provider: PciFunction,
  client: PciFunction,
  verbose: boolean,
): MapTypeAndDist {
  const acs: PciFunction[] = [];
  const { common, distA, distB } = findCommon(ctx, provider, client, acs);
  let mapType: MapTypeAndDist['mapType'] = 'thru-host-bridge';
  let acsRedirects = false;
  if (common) {
    // The client's side below the common device is checked too.
    for (let bb: PciFunction | null = client; bb && bb !== common; bb = pciUpstreamBridge(bb)) {
      if (pciBridgeHasAcsRedir(ctx, bb)) acs.push(bb);
    }
    if (acs.length === 0) mapType = 'bus-addr';
    else {
      if (verbose) {
        pciWarn(ctx, client, `ACS redirect is set between the client and provider (${provider.name})`);
        pciWarn(
          ctx,
          client,
          `to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=${acsListText(acs.map((f) => f.name))}`,
        );
      }
      acsRedirects = true;
    }
  }
  if (
    mapType === 'thru-host-bridge' &&
    !cpuSupportsP2pdma(ctx.machine.cpu) &&
    !hostBridgeWhitelist(ctx, provider, client, acsRedirects)
  ) {
    if (verbose) {
      pciWarn(
        ctx,
        client,
        `cannot be used for peer-to-peer DMA as the client and provider (${provider.name}) do not share an upstream bridge or whitelisted host bridge`,
      );
    }
    mapType = 'not-supported';
  }
  ctx.p2pdma.get(provider.index)?.mapTypes.set(mapTypesIdx(client.addr), mapType);
  // ACS seen on a path without a common device does not matter to the kernel, so it is not reported.
  return {
    mapType,
    dist: distA + distB,
    common,
    acsRedirect: common ? acs : [],
    viaHostBridge: mapType !== 'bus-addr',
  };
}

/**
 * `pci_p2pdma_distance_many()`: the summed distance from provider to every client.
 * @returns the distance, or -1 if there are no clients or any client is not supported (non-verbose
 *   calls stop at the first unsupported client; verbose ones go on to log every client's warnings).
 */
export function pciP2pdmaDistanceMany(
  ctx: P2pdmaContext,
  provider: PciFunction,
  clients: readonly PciFunction[],
  verbose: boolean,
): number {
  if (clients.length === 0) return -1;
  let notSupported = false;
  let total = 0;
  for (const c of clients) {
    const r = calcMapTypeAndDist(ctx, provider, c, verbose);
    if (r.mapType === 'not-supported') notSupported = true;
    if (notSupported && !verbose) break;
    total += r.dist;
  }
  return notSupported ? -1 : total;
}

/** `pci_p2pdma_distance()`: the one-client wrapper. */
export const pciP2pdmaDistance = (
  ctx: P2pdmaContext,
  provider: PciFunction,
  client: PciFunction,
  verbose: boolean,
): number => pciP2pdmaDistanceMany(ctx, provider, [client], verbose);
