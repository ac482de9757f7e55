// The sysfs reader on real data: the 21 snapshots recorded from a real Linux 6.1 kernel (oracle
// cases) and the four real-machine hwloc captures, checked against what the kernel and hwloc
// themselves reported about the same trees.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Machine, PciFunction } from '../src/hw/pci.js';
import { isBridge, isEndpoint } from '../src/hw/pci.js';
import { openSnapshot } from '../src/topology/sysfs/index.js';

const SHARED = join(import.meta.dirname, '..', '../shared/fixtures');
const ORACLE = join(SHARED, 'oracle');
const HWLOC = join(SHARED, 'real/hwloc/linux');

const loaded = new Map<string, Promise<Machine>>();
const load = (path: string): Promise<Machine> => {
  let m = loaded.get(path);
  if (m === undefined) {
    m = openSnapshot(path);
    loaded.set(path, m);
  }
  return m;
};

interface Expected {
  case: string;
  cmdline: string;
  pairs: { provider: string; client: string; warnings: string[] }[];
}

/** The CPU each case was booted with (shared/fixtures/oracle/README.md). */
function expectedCpu(name: string): { vendorId: string; family: number } {
  if (name === 'cpu-epyc-milan') return { vendorId: 'AuthenticAMD', family: 25 };
  if (name === 'cpu-phenom') return { vendorId: 'AuthenticAMD', family: 16 };
  if (name === 'cpu-skylake') return { vendorId: 'GenuineIntel', family: 6 };
  if (name.endsWith('epyc')) return { vendorId: 'AuthenticAMD', family: 23 };
  return { vendorId: 'AuthenticAMD', family: 15 }; // QEMU's default qemu64
}

/** Cases booted with an IOMMU on; the others' snapshots hold no sys/kernel/iommu_groups. */
const IOMMU_CASES = new Set([
  'amd-iommu-epyc',
  'disable-acs-id',
  'ioh3420-iommu',
  'iommu-default',
  'pxb-iommu',
  'switch-iommu',
  'switch-iommu-disable-acs',
  'switch-iommu-epyc',
]);

const cases = readdirSync(ORACLE)
  .filter((f) => f.endsWith('.expected.json'))
  .map((f) => f.replace('.expected.json', ''))
  .sort();

describe('oracle snapshots (Linux 6.1.192 under QEMU)', () => {
  it('has all 21 recorded cases', () => expect(cases.length).toBe(21));

  for (const name of cases) {
    it(`${name}: endpoints, drivers, cpu and cmdline match what the kernel reported`, async () => {
      const exp = JSON.parse(readFileSync(join(ORACLE, `${name}.expected.json`), 'utf8')) as Expected;
      const m = await load(join(ORACLE, `${name}.tar.gz`));
      expect(m.name).toBe(name);
      const providers = [...new Set(exp.pairs.map((p) => p.provider))].sort();
      expect(m.functions.filter(isEndpoint).map((f) => f.name)).toEqual(providers);
      // Each warning starts with the dev_warn prefix "<driver or pci> <BDF>:".
      const prefixes = new Map<string, string>();
      for (const w of exp.pairs.flatMap((p) => p.warnings)) {
        const hit = /^(\S+) ([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]): /.exec(w);
        if (hit) prefixes.set(hit[2]!, hit[1]!);
      }
      for (const [bdf, prefix] of prefixes)
        expect([bdf, m.byName.get(bdf)?.driver ?? 'pci']).toEqual([bdf, prefix]);
      expect(m.cmdline).toBe(exp.cmdline);
      expect(m.cpu).toMatchObject({ ...expectedCpu(name), arch: 'x86_64', sockets: 1 });
      // Read as root: every PCIe function shows its extended space, so nothing is unknown.
      expect(m.functions.filter((f) => f.acs.state === 'unknown')).toEqual([]);
      expect(m.iommu).toBe(IOMMU_CASES.has(name) ? true : null);
    });
  }

  it('switch-iommu: Linux turned on ACS redirect (ctrl 0x001d) on root port 00:03.0', async () => {
    const m = await load(join(ORACLE, 'switch-iommu.tar.gz'));
    expect(m.byName.get('0000:00:03.0')!.acs).toMatchObject({ state: 'present', ctrl: 0x001d });
    expect(m.byName.get('0000:00:03.0')!.portType).toBe('root-port');
    expect(m.byName.get('0000:03:00.0')!.driver).toBe('nvme');
    expect(m.byName.get('0000:03:00.0')!.iommuGroup).toBe(7);
  });
  it('iommu-off: ACS was not requested, ctrl stays 0', async () => {
    const m = await load(join(ORACLE, 'iommu-off.tar.gz'));
    expect(m.byName.get('0000:00:03.0')!.acs).toMatchObject({ state: 'present', ctrl: 0 });
  });
  it('pxb: expander host bridges are separate root buses', async () => {
    const m = await load(join(ORACLE, 'pxb.tar.gz'));
    expect(m.hostBridges.map((h) => h.name)).toEqual(['pci0000:00', 'pci0000:40', 'pci0000:80']);
  });
});

// ---- hwloc's own view of its captures: lstopo text (.console) and XML (.xml) ----

interface HwlocObj {
  readonly kind: 'host' | 'bridge' | 'dev';
  readonly busid: string | null;
  readonly id: string | null;
  /** For host bridges: domain and the first bus of their range. */
  readonly domain: number | null;
  readonly bus: number | null;
  readonly parent: HwlocObj | null;
}

function hostFromRange(range: string): { domain: number; bus: number } {
  const r = /^([0-9a-f]+):\[([0-9a-f]+)-/.exec(range)!;
  return { domain: Number.parseInt(r[1]!, 16), bus: Number.parseInt(r[2]!, 16) };
}

/** lstopo's text output: indentation gives nesting. */
function parseConsole(text: string): HwlocObj[] {
  const out: HwlocObj[] = [];
  const stack: { indent: number; obj: HwlocObj | null }[] = [];
  for (const line of text.split('\n')) {
    const indent = line.length - line.trimStart().length;
    while (stack.length > 0 && stack.at(-1)!.indent >= indent) stack.pop();
    const parent = [...stack].reverse().find((s) => s.obj !== null)?.obj ?? null;
    const host = /^\s*HostBridge L#\d+ \(buses=([^)\s]+)\)/.exec(line);
    const pci = /^\s*(PCIBridge|PCI) L#\d+ \(busid=(\S+) id=([0-9a-f]{4}:[0-9a-f]{4})/.exec(line);
    let obj: HwlocObj | null = null;
    if (host) obj = { kind: 'host', busid: null, id: null, ...hostFromRange(host[1]!), parent };
    else if (pci) {
      const kind = pci[1] === 'PCIBridge' ? 'bridge' : 'dev';
      obj = { kind, busid: pci[2]!, id: pci[3]!, domain: null, bus: null, parent };
    }
    if (obj) out.push(obj);
    stack.push({ indent, obj });
  }
  return out;
}

/** hwloc XML: <object> nesting gives the tree. */
function parseXml(text: string): HwlocObj[] {
  const out: HwlocObj[] = [];
  const stack: (HwlocObj | null)[] = [];
  for (const tag of text.matchAll(/<object\b([^>]*?)(\/?)>|<\/object>/g)) {
    if (tag[0] === '</object>') {
      stack.pop();
      continue;
    }
    const attrs = tag[1]!;
    const a = (k: string) => new RegExp(`\\b${k}="([^"]*)"`).exec(attrs)?.[1] ?? null;
    const parent = [...stack].reverse().find((s) => s !== null) ?? null;
    const type = a('type');
    const id = /\[([0-9a-f]{4}:[0-9a-f]{4})\]/.exec(a('pci_type') ?? '')?.[1] ?? null;
    let obj: HwlocObj | null = null;
    if (type === 'Bridge' && a('bridge_type')?.startsWith('0-')) {
      obj = { kind: 'host', busid: null, id: null, ...hostFromRange(a('bridge_pci')!), parent };
    } else if (type === 'Bridge' || type === 'PCIDev') {
      obj = {
        kind: type === 'Bridge' ? 'bridge' : 'dev',
        busid: a('pci_busid'),
        id,
        domain: null,
        bus: null,
        parent,
      };
    }
    if (obj) out.push(obj);
    if (tag[2] !== '/') stack.push(obj);
  }
  return out;
}

const hex4 = (n: number) => n.toString(16).padStart(4, '0');

/** Check hwloc's objects against the machine: hwloc's set is a subset, with equal IDs and parents. */
function compareWithHwloc(m: Machine, objs: readonly HwlocObj[]): void {
  const shown = new Set(objs.filter((o) => o.busid !== null).map((o) => o.busid!));
  expect(shown.size).toBeGreaterThan(3);
  for (const o of objs) {
    if (o.kind === 'host') continue;
    const f = m.byName.get(o.busid!);
    expect(f, `${o.busid} is in hwloc's output`).toBeDefined();
    if (!f) continue;
    expect([o.busid, `${hex4(f.vendor)}:${hex4(f.device)}`]).toEqual([o.busid, o.id]);
    expect([o.busid, isBridge(f)]).toEqual([o.busid, o.kind === 'bridge']);
    // hwloc hides some functions, so compare with the nearest ancestor hwloc shows.
    let up: PciFunction | null = f.bridge;
    while (up !== null && !shown.has(up.name)) up = up.bridge;
    if (o.parent?.kind === 'host') {
      expect([o.busid, up?.name ?? null]).toEqual([o.busid, null]);
      expect([o.busid, f.hostBridge.domain, f.hostBridge.rootBus]).toEqual([
        o.busid,
        o.parent.domain,
        o.parent.bus,
      ]);
    } else {
      expect([o.busid, up?.name ?? null]).toEqual([o.busid, o.parent?.busid ?? null]);
    }
  }
}

const HWLOC_CASES: readonly [string, string][] = [
  ['2pa-pcidomain32bits', 'console'],
  ['32intel64-2p8co2t+8ve', 'console'],
  ['32em64t-2n8c+dax+nvme+mic+dimms', 'xml'],
  ['40intel64-2g2n4c+pcilocality', 'xml'],
];

describe('hwloc captures of real machines (64-byte config, read without root)', () => {
  for (const [name, oracle] of HWLOC_CASES) {
    it(`${name}: hwloc's bridges and devices are ours, with the same IDs and parents`, async () => {
      const m = await load(join(HWLOC, `${name}.tar.bz2`));
      const text = readFileSync(join(HWLOC, `${name}.${oracle}`), 'utf8');
      compareWithHwloc(m, oracle === 'xml' ? parseXml(text) : parseConsole(text));
    });
    it(`${name}: ACS and port types are unknown unless config shows no capabilities; notes say why`, async () => {
      const m = await load(join(HWLOC, `${name}.tar.bz2`));
      expect(m.functions.every((f) => f.config?.length === 64)).toBe(true);
      // Without the capability-list bit a function is conventional PCI: no PCIe capability, no ACS.
      const capList = (f: PciFunction) => ((f.config![6]! >> 4) & 1) === 1;
      const unknownAcs = m.functions.filter((f) => f.acs.state === 'unknown');
      expect(unknownAcs.length).toBeGreaterThan(0);
      expect(unknownAcs).toEqual(m.functions.filter(capList));
      expect(unknownAcs.every((f) => typeof f.portType === 'object')).toBe(true);
      expect(m.functions.filter((f) => !capList(f)).every((f) => f.portType === 'none')).toBe(true);
      expect(m.notes).toContain(
        `${unknownAcs.length} functions have 64-byte config (read without root): ACS and PCIe port types are unknown`,
      );
      expect(m.iommu).toBeNull();
      expect(m.cpu?.vendorId).toBe('GenuineIntel');
    });
  }

  it('2pa-pcidomain32bits: a 32-bit PCI domain, host bridge pci10000:00', async () => {
    const m = await load(join(HWLOC, '2pa-pcidomain32bits.tar.bz2'));
    expect(m.hostBridges.map((h) => h.name)).toEqual(['pci0000:00', 'pci10000:00']);
    expect(m.byName.get('10000:00:04.0')?.hostBridge.domain).toBe(0x10000);
  });
  it('32intel64-2p8co2t+8ve: root bus 5d has no 00.0 function; its first is root port 5d:02.0', async () => {
    const m = await load(join(HWLOC, '32intel64-2p8co2t+8ve.tar.bz2'));
    const hb = m.hostBridges.find((h) => h.name === 'pci0000:5d')!;
    expect(hb.rootBus).toBe(0x5d);
    expect(m.byName.has('0000:5d:00.0')).toBe(false);
    expect(hb.rootFunctions[0]?.name).toBe('0000:5d:02.0');
    // The pruned capture lists no 5f:03.0, but the Ethernet functions sit under it: read from its folder.
    expect(m.byName.get('0000:60:00.0')?.bridge?.name).toBe('0000:5f:03.0');
    expect(m.kernelRelease).toBe('3.10.0-1160.15.2.el7.x86_64');
    expect(m.byName.get('0000:1b:00.0')?.link).toMatchObject({ speedGts: 8, width: 16 });
  });
  it('32em64t: two sockets, two NUMA nodes, four root buses', async () => {
    const m = await load(join(HWLOC, '32em64t-2n8c+dax+nvme+mic+dimms.tar.bz2'));
    expect(m.cpu?.sockets).toBe(2);
    expect(m.numaNodes).toBe(2);
    expect(m.hostBridges.map((h) => h.name)).toEqual([
      'pci0000:00',
      'pci0000:7f',
      'pci0000:80',
      'pci0000:ff',
    ]);
  });
});
