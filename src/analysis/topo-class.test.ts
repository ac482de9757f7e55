// topo-class on hand-made machines (known and unknown port types, NUMA rules) and, with fast-check,
// against a plain reference that collects the path's bridges into a set. The DGX-2 and the other real
// machines are checked in test/fixtures-xml.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildMachine,
  type FunctionSpec,
  type HostBridgeSpec,
  type ParentRef,
} from '../hw/machine-builder.js';
import { isBridge, type Machine, type PciFunction } from '../hw/pci.js';
import type { PciePortType } from '../hw/pci-regs.js';
import { prepareTopoClass, type TopoClass, topoClass } from './topo-class.js';

const UNKNOWN = { state: 'unknown', reason: 'test' } as const;

interface Node {
  readonly name: string;
  readonly parent: ParentRef;
  readonly bridge?: boolean;
  readonly port?: PciePortType;
}

const host = (hostBridge: string): ParentRef => ({ kind: 'host', hostBridge });
const under = (name: string): ParentRef => ({ kind: 'bridge', name });

function machine(hbs: HostBridgeSpec[], nodes: Node[], numaNodes: number | null = 2): Machine {
  const functions: FunctionSpec[] = nodes.map((n) => ({
    name: n.name,
    parent: n.parent,
    vendor: 0x10b5,
    device: 0x9797,
    classCode: n.bridge ? 0x060400 : 0x030200,
    headerType: n.bridge ? 1 : 0,
    portType: n.port ?? UNKNOWN,
    acs: UNKNOWN,
  }));
  return buildMachine({
    name: 'test',
    source: { kind: 'builtin', path: 'test' },
    cpu: null,
    cmdline: null,
    iommu: null,
    numaNodes,
    hostBridges: hbs,
    functions,
  });
}

//   pci0000:00 (node 0): RP 00:01.0 -> USP 01:00.0 -> DSP 02:00.0 -> GPU 03:00.0
//                                                  -> DSP 02:01.0 -> GPU 04:00.0
//                                                  -> DSP 02:02.0 -> USP 05:00.0 -> DSP 06:00.0 -> GPU 07:00.0
//                        RP 00:02.0 -> GPU 10:00.0, 10:00.1 (two functions)
//                        00:1f.0 integrated on the root bus
//   pci0000:40 (node 0): RP 40:01.0 -> GPU 41:00.0        pci0000:80 (node 1): RP 80:01.0 -> GPU 81:00.0
const TREE: Node[] = [
  { name: '0000:00:01.0', parent: host('pci0000:00'), bridge: true },
  { name: '0000:01:00.0', parent: under('0000:00:01.0'), bridge: true },
  { name: '0000:02:00.0', parent: under('0000:01:00.0'), bridge: true },
  { name: '0000:02:01.0', parent: under('0000:01:00.0'), bridge: true },
  { name: '0000:02:02.0', parent: under('0000:01:00.0'), bridge: true },
  { name: '0000:03:00.0', parent: under('0000:02:00.0') },
  { name: '0000:04:00.0', parent: under('0000:02:01.0') },
  { name: '0000:05:00.0', parent: under('0000:02:02.0'), bridge: true },
  { name: '0000:06:00.0', parent: under('0000:05:00.0'), bridge: true },
  { name: '0000:07:00.0', parent: under('0000:06:00.0') },
  { name: '0000:00:02.0', parent: host('pci0000:00'), bridge: true },
  { name: '0000:10:00.0', parent: under('0000:00:02.0') },
  { name: '0000:10:00.1', parent: under('0000:00:02.0') },
  { name: '0000:00:1f.0', parent: host('pci0000:00') },
  { name: '0000:40:01.0', parent: host('pci0000:40'), bridge: true },
  { name: '0000:41:00.0', parent: under('0000:40:01.0') },
  { name: '0000:80:01.0', parent: host('pci0000:80'), bridge: true },
  { name: '0000:81:00.0', parent: under('0000:80:01.0') },
];

const HBS = (n40: number | null, n80: number | null): HostBridgeSpec[] => [
  { name: 'pci0000:00', domain: 0, rootBus: 0, numaNode: 0 },
  { name: 'pci0000:40', domain: 0, rootBus: 0x40, numaNode: n40 },
  { name: 'pci0000:80', domain: 0, rootBus: 0x80, numaNode: n80 },
];

function classOf(m: Machine, a: string, b: string): TopoClass {
  return topoClass(m, m.byName.get(a)!, m.byName.get(b)!);
}

describe('topoClass with port types inferred from the tree', () => {
  const m = machine(HBS(0, 1), TREE);
  const cases: [string, string, TopoClass][] = [
    ['0000:03:00.0', '0000:03:00.0', 'X'],
    ['0000:03:00.0', '0000:04:00.0', 'PIX'],
    ['0000:10:00.0', '0000:10:00.1', 'PIX'],
    ['0000:03:00.0', '0000:07:00.0', 'PXB'],
    ['0000:04:00.0', '0000:07:00.0', 'PXB'],
    ['0000:03:00.0', '0000:10:00.0', 'PHB'],
    ['0000:03:00.0', '0000:00:1f.0', 'PHB'],
    ['0000:03:00.0', '0000:41:00.0', 'NODE'],
    ['0000:03:00.0', '0000:81:00.0', 'SYS'],
    ['0000:41:00.0', '0000:81:00.0', 'SYS'],
  ];
  it.each(cases)('%s <-> %s is %s', (a, b, want) => {
    expect(classOf(m, a, b)).toBe(want);
    expect(classOf(m, b, a)).toBe(want);
  });
});

describe('topoClass with port types from config space', () => {
  it('uses known types: a bridge typed as a plain PCIe-to-PCI bridge is not merged into a switch', () => {
    const typed = TREE.map((n): Node => {
      if (n.name === '0000:01:00.0') return { ...n, port: 'upstream-port' };
      if (n.name.startsWith('0000:02:')) return { ...n, port: 'downstream-port' };
      if (n.name === '0000:05:00.0') return { ...n, port: 'pcie-to-pci-bridge' };
      if (n.name === '0000:06:00.0') return { ...n, port: 'pcie-to-pci-bridge' };
      return n.bridge ? { ...n, port: 'root-port' } : n;
    });
    const m = machine(HBS(0, 1), typed);
    expect(classOf(m, '0000:03:00.0', '0000:04:00.0')).toBe('PIX');
    expect(classOf(m, '0000:03:00.0', '0000:07:00.0')).toBe('PXB');
    // Inferred from the shape, 05:00.0 is a switch upstream port and 06:0x.0 its downstream ports:
    // one bridge. Typed as PCIe-to-PCI bridges they are three.
    const extra: Node[] = [
      { name: '0000:06:01.0', parent: under('0000:05:00.0'), bridge: true, port: 'pcie-to-pci-bridge' },
      { name: '0000:08:00.0', parent: under('0000:06:01.0') },
    ];
    expect(classOf(machine(HBS(0, 1), [...typed, ...extra]), '0000:07:00.0', '0000:08:00.0')).toBe('PXB');
    const shaped = [...TREE, ...extra.map(({ port: _, ...n }) => n)];
    expect(classOf(machine(HBS(0, 1), shaped), '0000:07:00.0', '0000:08:00.0')).toBe('PIX');
  });
});

describe('topoClass with unknown NUMA nodes on different host bridges', () => {
  const gpus = ['0000:41:00.0', '0000:81:00.0'] as const;
  it('is NODE when the machine has at most one NUMA node', () => {
    expect(classOf(machine(HBS(null, null), TREE, 1), ...gpus)).toBe('NODE');
    expect(classOf(machine(HBS(null, 1), TREE, 1), ...gpus)).toBe('NODE');
    expect(classOf(machine(HBS(null, null), TREE, 0), ...gpus)).toBe('NODE');
  });
  it('is SYS when it has several, or an unknown count', () => {
    expect(classOf(machine(HBS(null, null), TREE, 2), ...gpus)).toBe('SYS');
    expect(classOf(machine(HBS(0, -1), TREE, 2), ...gpus)).toBe('SYS');
    expect(classOf(machine(HBS(null, null), TREE, null), ...gpus)).toBe('SYS');
  });
  it('still uses known nodes, whatever the count says', () => {
    expect(classOf(machine(HBS(1, 1), TREE, 1), ...gpus)).toBe('NODE');
    expect(classOf(machine(HBS(0, 1), TREE, 1), ...gpus)).toBe('SYS');
  });
});

describe('prepareTopoClass', () => {
  it('refuses a function of another machine (a caller bug)', () => {
    const m = machine(HBS(0, 1), TREE);
    const other = machine(HBS(0, 1), TREE);
    const f = prepareTopoClass(m);
    expect(() => f(m.functions[0]!, other.functions[1]!)).toThrow(/is not in test/);
  });
});

// Reference: the path's bridges in a Set, each mapped to its switch, then counted.
function reference(m: Machine, a: PciFunction, b: PciFunction): TopoClass {
  if (a === b) return 'X';
  if (a.hostBridge !== b.hostBridge) {
    const na = a.hostBridge.numaNode;
    const nb = b.hostBridge.numaNode;
    if (na !== null && nb !== null) return na === nb ? 'NODE' : 'SYS';
    return m.numaNodes !== null && m.numaNodes <= 1 ? 'NODE' : 'SYS';
  }
  const up = (f: PciFunction): PciFunction[] => (f.bridge ? [f.bridge, ...up(f.bridge)] : []);
  const ua = up(a);
  const ub = up(b);
  const lca = ua.find((x) => ub.includes(x));
  if (!lca) return 'PHB';
  const path = [...ua.slice(0, ua.indexOf(lca) + 1), ...ub.slice(0, ub.indexOf(lca))];
  const isUsp = (f: PciFunction): boolean => f.bridge !== null && f.children.some(isBridge) && !isDsp(f);
  const isDsp = (f: PciFunction): boolean => f.bridge !== null && isUsp(f.bridge);
  const units = new Set(path.map((f) => (isDsp(f) ? f.bridge! : f)));
  return units.size <= 1 ? 'PIX' : 'PXB';
}

describe('topoClass agrees with the reference on random trees', () => {
  // Each node i > 0 hangs below a random earlier bridge or on one of two root buses.
  const tree = fc.array(fc.record({ parent: fc.nat(), bridge: fc.boolean() }), {
    minLength: 2,
    maxLength: 40,
  });
  it('for every pair', () => {
    fc.assert(
      fc.property(tree, fc.option(fc.nat(1)), (spec, numa40) => {
        const nodes: Node[] = [];
        spec.forEach((s, i) => {
          const bridges = nodes.filter((n) => n.bridge);
          const name = `0000:${(i + 1).toString(16).padStart(2, '0')}:00.0`;
          const pick = s.parent % (bridges.length + 2);
          const parent =
            pick < bridges.length
              ? under(bridges[pick]!.name)
              : host(pick === bridges.length ? 'pci0000:00' : 'pci0000:40');
          nodes.push({ name, parent, bridge: s.bridge });
        });
        const m = machine(HBS(numa40, 1).slice(0, 2), nodes, 2);
        const f = prepareTopoClass(m);
        for (const a of m.functions) for (const b of m.functions) expect(f(a, b)).toBe(reference(m, a, b));
      }),
    );
  });
});
