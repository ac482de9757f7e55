// Big machines for benchmarks: a seeded random design with exactly the requested number of endpoint
// functions, built through the same path as machine files (so it is as real as a designed machine).
//
//   host bridge (1022:1480 at 00.0) ── root ports (1..4) ── switch trees of depth 1..3
//                                                            (Broadcom PEX89xxx ports, 2..7 per switch)
//                                                            leaves: one device of 1..8 functions
//
// The design stays within 256 buses per PCI domain: when one domain cannot hold everything, each host
// bridge gets a domain of its own (as multi-segment servers have). A fraction of the root and
// downstream ports comes with ACS redirect turned on by firmware; no IOMMU asks for more.

import type { Machine } from '../../hw/pci.js';
import type { KernelVersion } from '../../kernel/profile.js';
import { buildFromDoc, MachineDesignError } from './build.js';
import type { AcsDoc, DeviceDoc, DownstreamPortDoc, HostBridgeDoc, MachineFileDoc } from './schema.js';
import type { IdPair } from './values.js';

export interface GenerateOptions {
  /** Exact number of endpoint functions. */
  readonly endpoints: number;
  /** Host bridges (root buses); default one per 800 endpoints, at least 1. */
  readonly hostBridges?: number | undefined;
  readonly seed?: number | undefined;
  /** Fraction (0..1) of root and downstream ports with ACS redirect (RR|CR) on; default 0.25. */
  readonly acsFraction?: number | undefined;
  /** Uniform [0, 1) source; default a small seeded generator (mulberry32) from `seed`. */
  readonly next?: (() => number) | undefined;
  readonly kernel?: KernelVersion | undefined;
}

/** A tiny seeded uniform generator (mulberry32): src/ never uses the platform RNG. */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MAX_LEAVES_PER_DOMAIN = 140;
/** Endpoints one host bridge can take: 120 leaf devices of 8 functions. */
const MAX_PER_HOST_BRIDGE = 960;
const ROOT_PORT: IdPair = { vendor: 0x1022, device: 0x1483 };
const SWITCH: IdPair = { vendor: 0x1000, device: 0xc030 };
const KINDS = [
  { class: 0x030200, id: { vendor: 0x10de, device: 0x2331 } }, // H100 PCIe
  { class: 0x010802, id: { vendor: 0x144d, device: 0xa824 } }, // Samsung PM173x
  { class: 0x020000, id: { vendor: 0x15b3, device: 0x101b } }, // ConnectX-6
] as const;

interface Gen {
  readonly rnd: () => number;
  readonly acsFraction: number;
  kind: number;
  buses: number;
}

const int = (g: Gen, lo: number, hi: number): number => lo + Math.floor(g.rnd() * (hi - lo + 1));

/** Split `n` items into `k` non-empty contiguous group sizes. */
function split(g: Gen, n: number, k: number): number[] {
  const sizes = Array.from({ length: k }, () => 1);
  for (let left = n - k; left > 0; left--) sizes[int(g, 0, k - 1)]! += 1;
  return sizes;
}

const portAcs = (g: Gen): AcsDoc => (g.rnd() < g.acsFraction ? { cap: 'default', ctrl: 0x0c } : 'default');

function leafDevice(g: Gen, functions: number): DeviceDoc {
  const k = KINDS[g.kind++ % KINDS.length]!;
  return {
    kind: 'endpoint',
    id: k.id,
    class: k.class,
    functions,
    // One small 64-bit prefetchable BAR each keeps thousands of functions inside the windows.
    bars: [{ index: 0, size: 1n << 20n, bits: 64, prefetchable: true }],
  };
}

/** A switch whose downstream ports end in the given leaves, nesting about `depth` levels. */
function switchTree(g: Gen, leaves: number[], depth: number): DeviceDoc {
  const flat = leaves.length === 1 || (depth <= 1 && leaves.length <= 7);
  const groups = flat ? leaves.map(() => 1) : split(g, leaves.length, int(g, 2, Math.min(7, leaves.length)));
  let at = 0;
  const downstream: DownstreamPortDoc[] = groups.map((size) => {
    const mine = leaves.slice(at, at + size);
    at += size;
    g.buses += 1;
    const below = mine.length === 1 ? leafDevice(g, mine[0]!) : switchTree(g, mine, depth - 1);
    return { acs: portAcs(g), devices: [below] };
  });
  g.buses += 1;
  return { kind: 'switch', id: SWITCH, downstream };
}

/** One host bridge's design with `leaves` leaf devices; counts the buses it uses into g.buses. */
function design(g: Gen, endpoints: number, leaves: number): DeviceDoc[] {
  const perLeaf = Array.from({ length: leaves }, () => 1);
  for (let left = endpoints - leaves; left > 0; ) {
    const i = int(g, 0, leaves - 1);
    if (perLeaf[i]! < 8) {
      perLeaf[i]! += 1;
      left--;
    }
  }
  const ports = leaves === 0 ? [] : split(g, leaves, Math.min(leaves, int(g, 1, 4)));
  let at = 0;
  return ports.map((n, i) => {
    const mine = perLeaf.slice(at, at + n);
    at += n;
    g.buses += 1;
    const below =
      mine.length === 1 && g.rnd() < 0.3 ? leafDevice(g, mine[0]!) : switchTree(g, mine, int(g, 1, 3));
    return { kind: 'root-port', id: ROOT_PORT, slot: 1 + i, acs: portAcs(g), devices: [below] };
  });
}

/** A host bridge with `endpoints` endpoints whose buses fit one PCI domain (fewer leaves until they do). */
function hostBridge(g: Gen, endpoints: number, numaNode: number): HostBridgeDoc {
  const fewest = Math.ceil(endpoints / 8);
  let leaves = Math.min(
    MAX_LEAVES_PER_DOMAIN,
    endpoints,
    Math.max(fewest, Math.ceil(endpoints / int(g, 1, 4))),
  );
  for (;;) {
    const before = g.buses;
    const devices = design(g, endpoints, leaves);
    if (g.buses - before < 256 || leaves === fewest) {
      return { numaNode, hostBridgeId: { vendor: 0x1022, device: 0x1480 }, devices };
    }
    g.buses = before;
    leaves = Math.max(fewest, Math.floor(leaves * 0.85));
  }
}

/**
 * Design and build a machine with exactly `endpoints` endpoint functions.
 * @throws RangeError when the endpoints do not fit the host bridges (at most 960 per host bridge:
 *   120 leaf devices of 8 functions stay within one PCI domain's 256 buses).
 */
export function generateMachine(opts: GenerateOptions): Machine {
  const seed = opts.seed ?? 1;
  const n = opts.endpoints;
  const hbCount = opts.hostBridges ?? Math.max(1, Math.ceil(n / 800));
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`endpoints must be a positive integer (got ${n})`);
  if (!Number.isInteger(hbCount) || hbCount < 1 || hbCount > 0x10000)
    throw new RangeError(`bad host bridge count ${hbCount}`);
  if (Math.ceil(n / hbCount) > MAX_PER_HOST_BRIDGE) {
    throw new RangeError(`${n} endpoints need at least ${Math.ceil(n / MAX_PER_HOST_BRIDGE)} host bridges`);
  }
  const g: Gen = {
    rnd: opts.next ?? seededUniform(seed),
    acsFraction: opts.acsFraction ?? 0.25,
    kind: 0,
    buses: 0,
  };
  const per = Array.from({ length: hbCount }, (_, i) => Math.floor(n / hbCount) + (i < n % hbCount ? 1 : 0));
  const hbs = per.map((e, i) => hostBridge(g, e, i % 2));
  // One domain while all buses fit in 256, else a domain per host bridge.
  const oneDomain = g.buses + hbCount <= 256;
  const hostBridges = hbs.map((h, i) => (oneDomain ? h : { ...h, domain: i, bus: 0 }));
  const doc: MachineFileDoc = {
    name: `generated-${n}-seed${seed}`,
    cpu: {
      vendor: 'AuthenticAMD',
      family: 0x19,
      model: 0x01,
      name: 'AMD EPYC 7763 64-Core Processor',
      sockets: 2,
    },
    numaNodes: hbCount > 1 ? 2 : 1,
    kernel: { cmdline: '' },
    iommu: { vendor: 'none' },
    hostBridges,
  };
  try {
    return buildFromDoc(doc, doc.name!, {
      source: { kind: 'builtin', path: `generated:${n}:${seed}` },
      kernel: opts.kernel,
    }).machine;
  } catch (e) {
    if (e instanceof MachineDesignError) throw new RangeError(`generated design does not fit: ${e.message}`);
    throw e;
  }
}
