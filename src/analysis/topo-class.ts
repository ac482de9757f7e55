// The connection classes of `nvidia-smi topo -m` (NVML's nvmlDeviceGetTopologyCommonAncestor) for
// pairs of PCI functions, computed from the machine tree.
//
// Kernel counterpart: drivers/pci/p2pdma.c (calc_map_type_and_dist) walks both functions up to their
// lowest common upstream bridge the same way; here the walk counts bridges instead of ACS hops.
//
//   X     the same function
//   PIX   at most one PCIe bridge on the path: both under one switch (a switch upstream port and its
//         downstream ports count as one bridge), or under one bridge
//   PXB   several bridges, without crossing the host bridge
//   PHB   through the host bridge: same host bridge, no common bridge below it
//   NODE  different host bridges in one NUMA node
//   SYS   different NUMA nodes (the SMP interconnect: QPI/UPI, Infinity Fabric)
//
//   host bridge pci0000:2b                       (DGX-2, one of four)
//     `-- 2b:00.0 root port
//           `-- 2c:00.0 upper switch USP ---------------------.
//                 |-- 2d:04.0 DSP -- 32:00.0 lower switch USP  | one "bridge" each
//                 |                    |-- 33:00.0 DSP -- GPU 34:00.0    34 <-> 36  PIX (lower switch)
//                 |                    `-- 33:10.0 DSP -- GPU 36:00.0    34 <-> 39  PXB (lower, upper,
//                 `-- 2d:0c.0 DSP -- 37:00.0 lower switch USP                         lower switch)
//                                      `-- 38:00.0 DSP -- GPU 39:00.0
//
// Port types come from config space when a reader saw it. When it did not (hwloc and NCCL XML, 64-byte
// config), the tree shape decides, top-down: a bridge on a root bus is a root port; a bridge below a
// switch upstream port is a downstream port; any other bridge below a bridge that has bridge children
// is a switch upstream port.
//
// Unknown NUMA nodes (null or -1) for a pair on different host bridges: NODE when the machine has at
// most one NUMA node (they must share it), otherwise SYS, the class that promises nothing about
// locality. A machine whose NUMA node count is unknown counts as having several.

import type { Machine, PciFunction } from '../hw/pci.js';
import { isBridge } from '../hw/pci.js';

export type TopoClass = 'X' | 'PIX' | 'PXB' | 'PHB' | 'NODE' | 'SYS';

/** Classify a pair of functions of the machine it was prepared for. */
export type TopoClassFn = (a: PciFunction, b: PciFunction) => TopoClass;

type Role = 'endpoint' | 'root-port' | 'upstream' | 'downstream' | 'other';

/** A bridge's role from its known port type, or from the tree shape when the type is unknown. */
function bridgeRole(f: PciFunction, parentRole: Role | null): Role {
  if (!isBridge(f)) return 'endpoint';
  const pt = f.portType;
  if (typeof pt === 'string') {
    if (pt === 'root-port') return 'root-port';
    if (pt === 'upstream-port') return 'upstream';
    if (pt === 'downstream-port') return 'downstream';
    return 'other';
  }
  if (f.bridge === null) return 'root-port';
  if (parentRole === 'upstream') return 'downstream';
  return f.children.some(isBridge) ? 'upstream' : 'other';
}

interface Tables {
  readonly parent: Int32Array;
  readonly depth: Int32Array;
  /** The switch (or lone bridge) each bridge belongs to: a downstream port maps to its upstream port. */
  readonly unit: Int32Array;
  readonly host: Int32Array;
  readonly numa: Int32Array;
}

function buildTables(m: Machine): Tables {
  const n = m.functions.length;
  const t: Tables = {
    parent: new Int32Array(n).fill(-1),
    depth: new Int32Array(n),
    unit: new Int32Array(n),
    host: new Int32Array(n),
    numa: new Int32Array(n).fill(-1),
  };
  const role: Role[] = new Array<Role>(n).fill('endpoint');
  // Breadth-first from the root buses, so a parent's role is known before its children's.
  const queue = m.hostBridges.flatMap((h) => h.rootFunctions);
  for (let q = 0; q < queue.length; q++) {
    const f = queue[q]!;
    const i = f.index;
    const p = f.bridge?.index ?? -1;
    t.parent[i] = p;
    t.depth[i] = p < 0 ? 0 : t.depth[p]! + 1;
    role[i] = bridgeRole(f, p < 0 ? null : role[p]!);
    t.unit[i] = role[i] === 'downstream' && p >= 0 && role[p] === 'upstream' ? p : i;
    t.host[i] = f.hostBridge.index;
    const node = f.hostBridge.numaNode ?? f.numaNode;
    t.numa[i] = node !== null && node >= 0 ? node : -1;
    queue.push(...f.children);
  }
  if (queue.length !== n)
    throw new Error(`topo-class: ${n - queue.length} functions unreachable from a root bus`);
  return t;
}

/**
 * Precompute a machine's tables once; the returned function classifies a pair in O(tree depth)
 * without allocating.
 * @returns the classifier. It throws (a bug, not bad input) when given a function of another machine.
 */
export function prepareTopoClass(m: Machine): TopoClassFn {
  const { parent, depth, unit, host, numa } = buildTables(m);
  const fs = m.functions;
  const oneNode = m.numaNodes !== null && m.numaNodes <= 1;
  return (a, b) => {
    if (fs[a.index] !== a || fs[b.index] !== b)
      throw new Error(`topo-class: ${a.name} or ${b.name} is not in ${m.name}`);
    if (a === b) return 'X';
    const ia = a.index;
    const ib = b.index;
    if (host[ia] !== host[ib]) {
      const na = numa[ia]!;
      const nb = numa[ib]!;
      if (na >= 0 && nb >= 0) return na === nb ? 'NODE' : 'SYS';
      return oneNode ? 'NODE' : 'SYS';
    }
    // Climb both sides to their lowest common bridge, counting runs of bridges of one switch.
    let x = parent[ia]!;
    let y = parent[ib]!;
    let runsX = 0;
    let runsY = 0;
    let lastX = -1;
    let lastY = -1;
    while (x !== y) {
      const dx = x < 0 ? -1 : depth[x]!;
      const dy = y < 0 ? -1 : depth[y]!;
      if (dx >= dy) {
        if (unit[x] !== lastX) {
          runsX++;
          lastX = unit[x]!;
        }
        x = parent[x]!;
      }
      if (dy >= dx) {
        if (unit[y] !== lastY) {
          runsY++;
          lastY = unit[y]!;
        }
        y = parent[y]!;
      }
    }
    if (x < 0) return 'PHB';
    // The common bridge's switch ends both sides' runs; count it once.
    const u = unit[x]!;
    const bridges = runsX + (u !== lastX ? 1 : 0) + runsY + (u !== lastY ? 1 : 0) - 1;
    return bridges <= 1 ? 'PIX' : 'PXB';
  };
}

const prepared = new WeakMap<Machine, TopoClassFn>();

/**
 * The `nvidia-smi topo -m` class of a pair of functions of `m` (tables are prepared once per machine).
 * @returns 'X' | 'PIX' | 'PXB' | 'PHB' | 'NODE' | 'SYS'; throws (a bug) for functions of another machine.
 */
export function topoClass(m: Machine, a: PciFunction, b: PciFunction): TopoClass {
  let fn = prepared.get(m);
  if (!fn) {
    fn = prepareTopoClass(m);
    prepared.set(m, fn);
  }
  return fn(a, b);
}
