// Every real hwloc and NCCL topology XML in shared/fixtures/real loads, with the numbers counted from
// the files themselves (see fixtures/real/README.md), and the DGX-2 GPUs get nvidia-smi's published
// PIX/PXB/NODE/SYS pattern.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareTopoClass, type TopoClass } from '../src/analysis/topo-class.js';
import type { Machine, PciFunction } from '../src/hw/pci.js';
import { readHwlocXml } from '../src/topology/xml/hwloc-xml.js';
import { readNcclXml } from '../src/topology/xml/nccl-xml.js';
import { detectXmlKind } from '../src/topology/xml/xml-common.js';

const REAL = join(import.meta.dirname, '..', '../shared/fixtures/real');

function load(rel: string): Machine {
  const path = join(REAL, rel);
  const text = readFileSync(path, 'utf8');
  return detectXmlKind(text) === 'nccl' ? readNcclXml(text, path) : readHwlocXml(text, path);
}

const xmlFiles = (dir: string): string[] =>
  readdirSync(join(REAL, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.xml'))
    .map((f) => join(dir, f));

const hexId = (f: PciFunction): string =>
  `${f.vendor.toString(16).padStart(4, '0')}:${f.device.toString(16).padStart(4, '0')}`;
const count = (m: Machine, pred: (f: PciFunction) => boolean): number => m.functions.filter(pred).length;
const bridges = (m: Machine): number => count(m, (f) => f.headerType === 1);
const base = (f: PciFunction): number => f.classCode >> 16;
const cls16 = (f: PciFunction): number => f.classCode >> 8;

interface Expect {
  kind: 'hwloc' | 'nccl';
  hostBridges: number;
  functions: number;
  bridges: number;
  numaNodes: number | null;
  check?: (m: Machine) => void;
}

const EXPECTED: Record<string, Expect> = {
  'hwloc/xml/nvidiaDGX2.xml': {
    kind: 'hwloc',
    hostBridges: 4,
    functions: 84,
    bridges: 56,
    numaNodes: 2,
    check: (m) => {
      const gpus = m.functions.filter((f) => hexId(f) === '10de:1db8');
      expect(gpus).toHaveLength(16);
      expect(gpus.every((f) => cls16(f) === 0x0302)).toBe(true);
      expect(gpus.map((f) => f.osNames[0])).toEqual(Array.from({ length: 16 }, (_, i) => `nvml${i}`));
      expect(count(m, (f) => hexId(f) === '10de:1ac2')).toBe(11);
      expect(count(m, (f) => f.link?.bandwidthGBps !== undefined)).toBe(84);
      expect(count(m, (f) => hexId(f) === '8086:2030')).toBe(4);
      expect(m.cpu).toMatchObject({
        vendorId: 'GenuineIntel',
        family: 6,
        model: 85,
        arch: 'x86_64',
        sockets: 2,
      });
      expect(m.hostBridges.map((h) => [h.name, h.numaNode])).toEqual([
        ['pci0000:2b', 0],
        ['pci0000:4e', 0],
        ['pci0000:ae', 1],
        ['pci0000:d7', 1],
      ]);
    },
  },
  'hwloc/xml/16intel64-manyVFs.xml': {
    kind: 'hwloc',
    hostBridges: 2,
    functions: 31,
    bridges: 13,
    numaNodes: 2,
    check: (m) => {
      expect(count(m, (f) => cls16(f) === 0x0200)).toBe(18);
      expect(count(m, (f) => f.vendor === 0x1137 && f.device === 0x00cf)).toBe(10);
      expect(Math.max(...m.functions.map((f) => depth(f)))).toBe(5);
    },
  },
  'hwloc/xml/192em64t-24n8c2t.xml': {
    kind: 'hwloc',
    hostBridges: 5,
    functions: 27,
    bridges: 15,
    numaNodes: 24,
    check: (m) => {
      expect(m.hostBridges.map((h) => [h.name, h.numaNode])).toEqual([
        ['pci0000:00', 0],
        ['pci0001:00', 1],
        ['pci0002:00', 4],
        ['pci0003:00', 6],
        ['pci0004:00', 8],
      ]);
      const cx = m.byName.get('0003:01:00.0')!;
      expect([hexId(cx), cx.classCode, cx.osNames]).toEqual(['15b3:1003', 0x028000, ['ib0', 'mlx4_0']]);
      expect(count(m, (f) => hexId(f) === '10b5:8518')).toBe(3);
      expect(m.cpu?.sockets).toBe(24);
    },
  },
  'hwloc/xml/96em64t-4n4d3ca2co-pci.xml': {
    kind: 'hwloc',
    hostBridges: 5,
    functions: 26,
    bridges: 12,
    numaNodes: 4,
    check: (m) => {
      expect(count(m, (f) => cls16(f) === 0x0200)).toBe(8);
      expect(m.cpu?.sockets).toBe(16);
    },
  },
  'hwloc/xml/32em64t-2n8c2t-pci-wholeio.xml': {
    kind: 'hwloc',
    hostBridges: 2,
    functions: 16,
    bridges: 6,
    numaNodes: 2,
    check: (m) => {
      expect(count(m, (f) => hexId(f) === '10de:1094')).toBe(3);
      // The hand-added ConnectX-4 reuses 04:00.0 below a bridge whose range is [84-84]: dropped.
      expect(hexId(m.byName.get('0000:04:00.0')!)).toBe('8086:1d6b');
      expect(m.notes.some((n) => n.startsWith('0000:04:00.0 appears twice'))).toBe(true);
    },
  },
  'hwloc/xml/24em64t-2n6c2t-pci.xml': {
    kind: 'hwloc',
    hostBridges: 2,
    functions: 15,
    bridges: 6,
    numaNodes: 2,
    check: (m) => expect(count(m, (f) => hexId(f) === '10de:06d2')).toBe(3),
  },
  'hwloc/xml/power8gpudistances.xml': {
    kind: 'hwloc',
    hostBridges: 4,
    functions: 8,
    bridges: 4,
    numaNodes: 2,
    check: (m) => {
      expect(m.cpu?.arch).toMatch(/^ppc64/);
      expect(m.cpu?.modelName).toMatch(/^POWER8/);
      expect(m.kernelRelease).toBe('4.19.0-14-powerpc64le');
      expect(count(m, (f) => hexId(f) === '10de:15f9' && cls16(f) === 0x0302)).toBe(4);
      expect(count(m, (f) => hexId(f) === '1014:03dc')).toBe(4);
      expect(m.byName.get('0002:01:00.0')!.osNames).toEqual(['cuda0', 'opencl0d0', 'nvml0']);
    },
  },
  'hwloc/linux/32em64t-2n8c+dax+nvme+mic+dimms.xml': {
    kind: 'hwloc',
    hostBridges: 4,
    functions: 136,
    bridges: 8,
    numaNodes: 2,
    check: (m) => {
      expect(m.byName.get('0000:00:02.0')!.classCode).toBe(0x010802);
      expect(m.hostBridges.map((h) => h.numaNode)).toEqual([0, null, 1, null]);
    },
  },
  'hwloc/linux/40intel64-2g2n4c+pcilocality.xml': {
    kind: 'hwloc',
    hostBridges: 2,
    functions: 37,
    bridges: 14,
    numaNodes: 4,
    check: (m) => {
      expect(count(m, (f) => hexId(f) === '14e4:1639')).toBe(4);
      expect(m.hostBridges.map((h) => h.numaNode)).toEqual([null, null]);
    },
  },
  'nccl-topo/aws-ofi-nccl/p4d-24xl-topo.xml': {
    kind: 'nccl',
    hostBridges: 2,
    functions: 16,
    bridges: 4,
    numaNodes: 2,
    check: (m) => {
      expect(count(m, (f) => f.classCode === 0x030200)).toBe(8);
      expect(count(m, (f) => f.classCode === 0x020000)).toBe(4);
      expect(m.hostBridges.map((h) => [h.name, h.numaNode])).toEqual([
        ['pciffff:ff', 0],
        ['pciffff:ff@cpu1', 1],
      ]);
    },
  },
  'nccl-topo/aws-ofi-nccl/p5.48xl-topo.xml': {
    kind: 'nccl',
    hostBridges: 8,
    functions: 48,
    bridges: 8,
    numaNodes: 1,
    check: (m) => {
      expect(count(m, (f) => f.classCode === 0x030200 && f.osNames[0]?.startsWith('gpu') === true)).toBe(8);
      expect(count(m, (f) => f.classCode === 0x020000 && f.osNames[0]?.startsWith('rdmap') === true)).toBe(
        32,
      );
      expect(m.cpu).toMatchObject({ vendorId: 'AuthenticAMD', family: 25, model: 17 });
    },
  },
  'nccl-topo/rccl/topo_8p_940.xml': {
    kind: 'nccl',
    hostBridges: 8,
    functions: 40,
    bridges: 24,
    numaNodes: 2,
    check: (m) => {
      expect(count(m, (f) => hexId(f) === '1002:74a1' && f.classCode === 0x120000)).toBe(8);
      expect(count(m, (f) => hexId(f) === '15b3:1979')).toBe(16);
      expect(count(m, (f) => hexId(f) === '15b3:1021' && f.classCode === 0x020700)).toBe(8);
      expect(m.cpu).toMatchObject({ vendorId: 'GenuineIntel', family: 6, model: 143 });
      expect(m.byName.get('0000:0c:00.0')!.link).toEqual({
        speedGts: 32,
        width: 16,
        maxSpeedGts: null,
        maxWidth: null,
      });
    },
  },
  'nccl-topo/rccl/topo_4p4h.xml': {
    // 52 <pci> elements: bridges c5:00.0 and e6:00.0 are each listed 8 times and read as one.
    kind: 'nccl',
    hostBridges: 2,
    functions: 38,
    bridges: 6,
    numaNodes: 1,
    check: (m) => {
      expect(count(m, (f) => f.classCode === 0x038000)).toBe(16);
      expect(count(m, (f) => f.classCode === 0x020700)).toBe(16);
      expect(m.byName.get('0000:c5:00.0')!.children).toHaveLength(16);
      expect(m.cpu).toMatchObject({ vendorId: 'AuthenticAMD', family: 23, model: 49 });
    },
  },
  'nccl-topo/rccl/topo_8p1h_4.xml': {
    kind: 'nccl',
    hostBridges: 4,
    functions: 38,
    bridges: 22,
    numaNodes: 2,
    check: (m) => {
      expect(count(m, (f) => f.vendor === 0x1000 && f.headerType === 1)).toBe(14);
      expect(count(m, (f) => f.vendor === 0x1022 && f.headerType === 1)).toBe(8);
      expect(count(m, (f) => base(f) === 0x02)).toBe(8);
      expect(m.cpu).toMatchObject({ family: 25, model: 1 });
    },
  },
  'nccl-topo/rccl/topo_8p_pcie.xml': {
    kind: 'nccl',
    hostBridges: 2,
    functions: 19,
    bridges: 10,
    numaNodes: 1,
    check: (m) => {
      expect(count(m, (f) => f.classCode === 0x038000)).toBe(8);
      expect(m.byName.get('0000:1a:00.0')!.osNames).toEqual(['mlx5_0']);
    },
  },
  'nccl-topo/rccl/topo_8p_rome_4n_1.xml': {
    kind: 'nccl',
    hostBridges: 4,
    functions: 32,
    bridges: 20,
    numaNodes: 4,
    check: (m) => {
      expect(count(m, (f) => f.vendor === 0x11f8)).toBe(12);
      expect(count(m, (f) => f.vendor === 0x1002 && f.headerType === 1)).toBe(8);
      expect(count(m, (f) => f.classCode === 0x020700)).toBe(4);
      expect(m.hostBridges.map((h) => h.numaNode).sort()).toEqual([1, 3, 5, 7]);
    },
  },
};

function depth(f: PciFunction): number {
  return f.bridge ? 1 + depth(f.bridge) : 0;
}

describe('real XML fixtures', () => {
  const files = [...xmlFiles('hwloc/xml'), ...xmlFiles('hwloc/linux'), ...xmlFiles('nccl-topo')].map((f) =>
    relative(REAL, join(REAL, f)),
  );

  it('has an expectation for every XML file, and a file for every expectation', () => {
    expect(files.sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.entries(EXPECTED))('%s', (rel, want) => {
    const text = readFileSync(join(REAL, rel), 'utf8');
    expect(detectXmlKind(text)).toBe(want.kind);
    const m = load(rel);
    expect(m.source.kind).toBe(want.kind === 'hwloc' ? 'hwloc-xml' : 'nccl-xml');
    expect(m.hostBridges).toHaveLength(want.hostBridges);
    expect(m.functions).toHaveLength(want.functions);
    expect(bridges(m)).toBe(want.bridges);
    expect(m.numaNodes).toBe(want.numaNodes);
    expect([m.cmdline, m.iommu]).toEqual([null, null]);
    for (const f of m.functions) expect(f.acs).toMatchObject({ state: 'unknown' });
    want.check?.(m);
  });
});

/** Ordered-pair counts of each class over `fs`, diagonal included. */
function tally(m: Machine, fs: readonly PciFunction[]): Record<TopoClass, number> {
  const f = prepareTopoClass(m);
  const out: Record<TopoClass, number> = { X: 0, PIX: 0, PXB: 0, PHB: 0, NODE: 0, SYS: 0 };
  for (const a of fs) for (const b of fs) out[f(a, b)]++;
  return out;
}

describe('nvidia-smi classes on the real machines', () => {
  it('DGX-2: PIX per lower switch, PXB per upper switch, NODE per socket, SYS across', () => {
    const m = load('hwloc/xml/nvidiaDGX2.xml');
    const gpus = m.functions.filter((f) => hexId(f) === '10de:1db8');
    // 8 lower switches of 2 GPUs, 4 upper switches of 4, 2 sockets of 8.
    expect(tally(m, gpus)).toEqual({ X: 16, PIX: 16, PXB: 32, PHB: 0, NODE: 64, SYS: 128 });
    const c = prepareTopoClass(m);
    const at = (n: string): PciFunction => m.byName.get(n)!;
    expect(c(at('0000:34:00.0'), at('0000:36:00.0'))).toBe('PIX');
    expect(c(at('0000:34:00.0'), at('0000:39:00.0'))).toBe('PXB');
    expect(c(at('0000:34:00.0'), at('0000:57:00.0'))).toBe('NODE');
    expect(c(at('0000:34:00.0'), at('0000:b7:00.0'))).toBe('SYS');
    expect(c(at('0000:b7:00.0'), at('0000:b9:00.0'))).toBe('PIX');
  });

  it('POWER8: one GPU per host bridge, two per socket', () => {
    const m = load('hwloc/xml/power8gpudistances.xml');
    expect(
      tally(
        m,
        m.functions.filter((f) => cls16(f) === 0x0302),
      ),
    ).toEqual({
      X: 4,
      PIX: 0,
      PXB: 0,
      PHB: 0,
      NODE: 4,
      SYS: 8,
    });
  });

  it('SL390s: two GPUs behind different root ports of one IOH are PHB', () => {
    const m = load('hwloc/xml/24em64t-2n6c2t-pci.xml');
    expect(
      tally(
        m,
        m.functions.filter((f) => hexId(f) === '10de:06d2'),
      ),
    ).toEqual({
      X: 3,
      PIX: 0,
      PXB: 0,
      PHB: 2,
      NODE: 0,
      SYS: 4,
    });
  });

  it('p4d: two GPUs and a NIC behind each switch; switches of one CPU meet at the host bridge', () => {
    const m = load('nccl-topo/aws-ofi-nccl/p4d-24xl-topo.xml');
    const c = prepareTopoClass(m);
    const at = (n: string): PciFunction => m.byName.get(n)!;
    expect(c(at('0000:10:1c.0'), at('0000:10:1d.0'))).toBe('PIX');
    expect(c(at('0000:10:1c.0'), at('0000:10:1b.0'))).toBe('PIX');
    expect(c(at('0000:10:1c.0'), at('0000:20:1c.0'))).toBe('PHB');
    expect(c(at('0000:10:1c.0'), at('0000:90:1c.0'))).toBe('SYS');
  });

  it('p5: each GPU shares its switch with 4 NICs; GPUs meet across host bridges of one node', () => {
    const m = load('nccl-topo/aws-ofi-nccl/p5.48xl-topo.xml');
    const gpus = m.functions.filter((f) => f.classCode === 0x030200);
    const nics = m.functions.filter((f) => f.classCode === 0x020000);
    const c = prepareTopoClass(m);
    expect(gpus.flatMap((g) => nics.filter((n) => c(g, n) === 'PIX'))).toHaveLength(32);
    expect(tally(m, gpus)).toEqual({ X: 8, PIX: 0, PXB: 0, PHB: 0, NODE: 56, SYS: 0 });
  });

  it('8p_pcie: a GPU-internal bridge below each switch port makes GPU pairs PXB', () => {
    const m = load('nccl-topo/rccl/topo_8p_pcie.xml');
    const gpus = m.functions.filter((f) => f.classCode === 0x038000);
    expect(tally(m, gpus)).toEqual({ X: 8, PIX: 0, PXB: 24, PHB: 0, NODE: 32, SYS: 0 });
  });

  it('is symmetric on every real machine', () => {
    for (const rel of Object.keys(EXPECTED)) {
      const m = load(rel);
      const c = prepareTopoClass(m);
      const odd: string[] = [];
      for (const a of m.functions)
        for (const b of m.functions) if (c(a, b) !== c(b, a)) odd.push(`${a.name} ${b.name}`);
      expect(odd, rel).toEqual([]);
    }
  });
});
