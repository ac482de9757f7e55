// The sysfs reader on small hand-made trees: what real snapshots lack (VFs, 8-digit domains, absent
// config, POWER), and every kind of bad input, each of which must be a TopologyError naming the file.
import { describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { type MemEntry, memorySourceFromEntries } from './memory-source.js';
import { readSysfsMachine } from './read-sysfs.js';

interface Cfg {
  vendor: number;
  device: number;
  classCode: number;
  headerType?: number;
  size?: number;
  /** PCIe port type code (4 = root port, 0 = endpoint); adds a PCIe capability at 0x40. */
  pcie?: number;
  /** ACS control value; adds an ACS extended capability at 0x100 (needs size 4096). */
  acsCtrl?: number;
  secondary?: number;
  subordinate?: number;
}

/** A config space as sysfs shows it, byte-exact for the fields the decoder reads. */
function config(c: Cfg): Uint8Array {
  const b = new Uint8Array(c.size ?? 4096);
  const w16 = (o: number, v: number) => {
    if (o + 1 < b.length) {
      b[o] = v & 0xff;
      b[o + 1] = v >> 8;
    }
  };
  w16(0, c.vendor);
  w16(2, c.device);
  b[9] = c.classCode & 0xff;
  b[10] = (c.classCode >> 8) & 0xff;
  b[11] = c.classCode >> 16;
  b[0x0e] = c.headerType ?? 0;
  if (c.secondary !== undefined) b[0x19] = c.secondary;
  if (c.subordinate !== undefined) b[0x1a] = c.subordinate;
  if (c.pcie !== undefined) {
    w16(6, 0x10);
    b[0x34] = 0x40;
    if (b.length > 0x40) {
      b[0x40] = 0x10;
      w16(0x42, (c.pcie << 4) | 2);
      w16(0x4c, 0x0043); // LNKCAP: 8 GT/s x4
      w16(0x52, 0x0041); // LNKSTA: 2.5 GT/s x4
    }
  }
  if (c.acsCtrl !== undefined && b.length >= 0x108) {
    w16(0x100, 0x000d);
    w16(0x102, 0x0001);
    w16(0x104, 0x005f);
    w16(0x106, c.acsCtrl);
  }
  return b;
}

const D = 'sys/devices/pci0000:00';
const RP = `${D}/0000:00:02.0`;
const EP = `${RP}/0000:01:00.0`;
const VF = `${RP}/0000:01:00.1`;

/** A host bridge, a root port with ACS, an NVMe endpoint (64-byte config) and its VF. */
function baseTree(): Record<string, MemEntry> {
  return {
    'sys/bus/pci/devices/0000:00:00.0': { link: '../../../devices/pci0000:00/0000:00:00.0' },
    'sys/bus/pci/devices/0000:00:02.0': { link: '../../../devices/pci0000:00/0000:00:02.0' },
    'sys/bus/pci/devices/0000:01:00.0': { link: '../../../devices/pci0000:00/0000:00:02.0/0000:01:00.0' },
    'sys/bus/pci/devices/0000:01:00.1': { link: '../../../devices/pci0000:00/0000:00:02.0/0000:01:00.1' },
    [`${D}/0000:00:00.0/config`]: config({ vendor: 0x8086, device: 0x29c0, classCode: 0x060000, size: 256 }),
    [`${D}/0000:00:00.0/numa_node`]: '1\n',
    [`${RP}/config`]: config({
      vendor: 0x1b36,
      device: 0x000c,
      classCode: 0x060400,
      headerType: 1,
      pcie: 4,
      acsCtrl: 0x1d,
      secondary: 1,
      subordinate: 1,
    }),
    [`${RP}/driver`]: { link: '../../../bus/pci/drivers/pcieport' },
    [`${RP}/subsystem_vendor`]: '0x1af4\n',
    [`${RP}/iommu_group`]: { link: '../../../kernel/iommu_groups/3' },
    [`${EP}/config`]: config({ vendor: 0x1b36, device: 0x0010, classCode: 0x010802, pcie: 0, size: 64 }),
    [`${EP}/subsystem_vendor`]: '0x1af4\n',
    [`${EP}/current_link_speed`]: '8.0 GT/s PCIe\n',
    [`${EP}/current_link_width`]: '4\n',
    [`${EP}/max_link_speed`]: 'Unknown\n',
    [`${EP}/resource`]: '0x00000000fe000000 0x00000000fe003fff 0x0000000000140204\n',
    [`${EP}/driver`]: { link: '../../../../bus/pci/drivers/nvme' },
    [`${EP}/iommu_group`]: { link: '../../../../kernel/iommu_groups/4' },
    [`${VF}/config`]: config({ vendor: 0x1b36, device: 0x0011, classCode: 0x010802, pcie: 0 }),
    [`${VF}/physfn`]: { link: '../0000:01:00.0' },
    'sys/kernel/iommu_groups/3/devices/0000:00:02.0': { link: '../../../../devices/pci0000:00/0000:00:02.0' },
    'sys/kernel/iommu_groups/4/devices/0000:01:00.0': {
      link: '../../../../devices/pci0000:00/0000:00:02.0/0000:01:00.0',
    },
    'sys/devices/system/node/node0': { dir: true },
    'sys/devices/system/node/node1': { dir: true },
    'sys/devices/system/node/possible': '0-1\n',
    'proc/cpuinfo':
      'processor : 0\nvendor_id : AuthenticAMD\ncpu family : 23\nmodel : 1\nmodel name : EPYC\nflags : lm\n',
    'proc/cmdline': 'intel_iommu=on quiet\n',
    'proc/version': 'Linux version 6.1.0-13-amd64 (debian-kernel@lists.debian.org) #1 SMP\n',
  };
}

const read = (entries: Record<string, MemEntry>, label = 'snap') =>
  readSysfsMachine(memorySourceFromEntries(label, entries), { name: 't', path: 'p', kind: 'snapshot' });

function fails(entries: Record<string, MemEntry>): TopologyError {
  try {
    read(entries);
  } catch (e) {
    if (e instanceof TopologyError) return e;
    throw e;
  }
  throw new Error('expected a TopologyError');
}

describe('readSysfsMachine: a hand-made tree', () => {
  const m = read(baseTree());
  const f = (n: string) => m.byName.get(n)!;

  it('builds the hierarchy from device paths', () => {
    expect(m.hostBridges.map((h) => [h.name, h.domain, h.rootBus, h.numaNode])).toEqual([
      ['pci0000:00', 0, 0, 1],
    ]);
    expect(m.functions.map((x) => x.name)).toEqual([
      '0000:00:00.0',
      '0000:00:02.0',
      '0000:01:00.0',
      '0000:01:00.1',
    ]);
    expect(f('0000:01:00.0').bridge?.name).toBe('0000:00:02.0');
    expect(f('0000:00:02.0').bridge).toBeNull();
    expect(f('0000:00:02.0').children.map((c) => c.name)).toEqual(['0000:01:00.0', '0000:01:00.1']);
    expect(f('0000:01:00.1').physfn?.name).toBe('0000:01:00.0');
  });
  it('decodes config space: port type and ACS where visible, unknown where not', () => {
    expect(f('0000:00:02.0').portType).toBe('root-port');
    expect(f('0000:00:02.0').acs).toMatchObject({ state: 'present', ctrl: 0x1d, cap: 0x5f });
    expect(f('0000:00:02.0').secondaryBus).toBe(1);
    expect(f('0000:01:00.0').acs.state).toBe('unknown');
    expect(f('0000:01:00.0').portType).toMatchObject({ state: 'unknown' });
    expect(f('0000:00:00.0').acs).toEqual({ state: 'absent' });
  });
  it('fills what config did not show from the text attributes', () => {
    const ep = f('0000:01:00.0');
    // A type 0 header shows the subsystem IDs in its first 64 bytes, so config wins; a bridge's come
    // from a capability that 256 bytes may hide, so its sysfs file fills in.
    expect(ep.subsystemVendor).toBe(0);
    expect(f('0000:00:02.0').subsystemVendor).toBe(0x1af4);
    expect(ep.link).toEqual({ speedGts: 8, width: 4, maxSpeedGts: null, maxWidth: null });
    expect(ep.bars.map((b) => [b.index, b.kind, b.prefetchable, b.size])).toEqual([
      [0, 'mem64', false, 0x4000n],
    ]);
    // The root port's link comes from its config, which wins over (absent) text files.
    expect(f('0000:00:02.0').link).toEqual({ speedGts: 2.5, width: 4, maxSpeedGts: 8, maxWidth: 4 });
  });
  it('reads driver and iommu_group link names even when their targets are not captured', () => {
    expect(f('0000:00:02.0').driver).toBe('pcieport');
    expect(f('0000:01:00.0').driver).toBe('nvme');
    expect(f('0000:01:00.1').driver).toBeNull();
    expect(f('0000:00:02.0').iommuGroup).toBe(3);
    expect(f('0000:01:00.0').iommuGroup).toBe(4);
  });
  it('reads /proc and the system facts', () => {
    expect(m.cpu?.family).toBe(23);
    expect(m.cmdline).toBe('intel_iommu=on quiet');
    expect(m.kernelRelease).toBe('6.1.0-13-amd64');
    expect(m.iommu).toBe(true);
    expect(m.numaNodes).toBe(2);
    expect(m.source).toEqual({ kind: 'snapshot', path: 'p' });
  });
  it('says what it could not see', () => {
    expect(m.notes).toContain(
      '1 function has 64-byte config (read without root): ACS and PCIe port types are unknown',
    );
    expect(m.notes.some((n) => /bus addresses/.test(n))).toBe(false);
  });
});

describe('readSysfsMachine: partial snapshots', () => {
  it('builds a function from text files when config is absent', () => {
    const t = baseTree();
    delete t[`${EP}/config`];
    Object.assign(t, {
      [`${EP}/vendor`]: '0x144d\n',
      [`${EP}/device`]: '0xa808\n',
      [`${EP}/class`]: '0x010802\n',
      [`${EP}/revision`]: '0x02\n',
    });
    const m = read(t);
    const ep = m.byName.get('0000:01:00.0')!;
    expect([ep.vendor, ep.device, ep.classCode, ep.revision, ep.headerType]).toEqual([
      0x144d, 0xa808, 0x010802, 2, 0,
    ]);
    expect(ep.acs.state).toBe('unknown');
    expect(ep.config).toBeNull();
    expect(m.notes.some((n) => /1 function has no config file/.test(n))).toBe(true);
  });
  it('reports iommu unknown without sys/kernel/iommu_groups, false when it is empty', () => {
    const t = baseTree();
    for (const k of Object.keys(t)) if (k.startsWith('sys/kernel/')) delete t[k];
    const m = read(t);
    expect(m.iommu).toBeNull();
    expect(m.notes.some((n) => /iommu_groups is not in the snapshot/.test(n))).toBe(true);
    expect(read({ ...t, 'sys/kernel/iommu_groups': { dir: true } }).iommu).toBe(false);
  });
  it('reports cpu and cmdline unknown without /proc, with notes', () => {
    const t = baseTree();
    delete t['proc/cpuinfo'];
    delete t['proc/cmdline'];
    const m = read(t);
    expect([m.cpu, m.cmdline]).toEqual([null, null]);
    expect(m.notes.filter((n) => /proc\/(cpuinfo|cmdline) is not in the snapshot/.test(n))).toHaveLength(2);
  });
  it('reads an 8-digit PCI domain (VMD, Hyper-V)', () => {
    const m = read({
      'sys/bus/pci/devices/10000:00:04.0': { link: '../../../devices/pci10000:00/10000:00:04.0/' },
      'sys/devices/pci10000:00/10000:00:04.0/config': config({
        vendor: 0x1af4,
        device: 0x1001,
        classCode: 0x010000,
      }),
    });
    expect(m.hostBridges.map((h) => [h.name, h.domain])).toEqual([['pci10000:00', 0x10000]]);
    expect(m.functions[0]!.name).toBe('10000:00:04.0');
  });
  it('notes that bus addresses are assumed equal to CPU addresses off x86', () => {
    const t = baseTree();
    t['proc/cpuinfo'] =
      'processor : 0\ncpu : POWER9 (raw), altivec supported\nrevision : 2.2 (pvr 004e 1202)\n';
    expect(read(t).notes.some((n) => /bus addresses are taken equal/.test(n))).toBe(true);
  });
  it('ignores a driver link that leaves the snapshot, with a note', () => {
    const t = baseTree();
    t[`${EP}/driver`] = { link: '../../../../../../../../../etc/evil' };
    const m = read(t);
    expect(m.byName.get('0000:01:00.0')!.driver).toBeNull();
    expect(m.notes.some((n) => /driver link of .*0000:01:00.0 points outside the snapshot/.test(n))).toBe(
      true,
    );
  });
  it('ignores a physfn link to a function that is not there, with a note', () => {
    const t = baseTree();
    t[`${VF}/physfn`] = { link: '../0000:09:00.0' };
    const m = read(t);
    expect(m.byName.get('0000:01:00.1')!.physfn).toBeNull();
    expect(m.notes.some((n) => /physfn link of 0000:01:00.1 names 0000:09:00.0/.test(n))).toBe(true);
  });
  it('reads a bridge missing from sys/bus/pci/devices from its directory, with a note', () => {
    const t = baseTree();
    delete t['sys/bus/pci/devices/0000:00:02.0'];
    const m = read(t);
    expect(m.byName.get('0000:01:00.0')!.bridge?.name).toBe('0000:00:02.0');
    expect(m.notes.some((n) => /0000:00:02.0 is not in sys\/bus\/pci\/devices/.test(n))).toBe(true);
  });
});

describe('readSysfsMachine: bad input is a TopologyError naming the file', () => {
  it('truncated config', () => {
    const e = fails({ ...baseTree(), [`${EP}/config`]: new Uint8Array(10) });
    expect(e.path).toBe(`${EP}/config`);
    expect(e.message).toMatch(/0000:01:00.0\/config is not a usable config space: config space is 10 bytes/);
  });
  it('garbled config (vendor 0xffff)', () => {
    const e = fails({ ...baseTree(), [`${EP}/config`]: new Uint8Array(256).fill(0xff) });
    expect(e.path).toBe(`${EP}/config`);
    expect(e.message).toMatch(/vendor 0xffff/);
  });
  it('missing sys/bus/pci/devices', () => {
    const e = fails({ 'proc/cpuinfo': 'x', 'sys/class/net/lo': { dir: true } });
    expect(e.path).toBe('sys/bus/pci/devices');
    expect(e.message).toMatch(/^not a sysfs snapshot: snap has no sys\/bus\/pci\/devices directory/);
  });
  it('a function with neither config nor identity files', () => {
    const t = baseTree();
    delete t[`${EP}/config`];
    const e = fails(t);
    expect(e.path).toBe(`${EP}/config`);
    expect(e.message).toMatch(/0000:01:00.0 has neither a config file nor readable vendor, device and class/);
  });
  it('a dangling device link', () => {
    const e = fails({
      ...baseTree(),
      'sys/bus/pci/devices/0000:05:00.0': { link: '../../../devices/pci0000:00/0000:05:00.0' },
    });
    expect(e.path).toBe('sys/bus/pci/devices/0000:05:00.0');
    expect(e.message).toMatch(/dangles/);
  });
  it('a looping device link', () => {
    const e = fails({ ...baseTree(), 'sys/bus/pci/devices/0000:05:00.0': { link: '0000:05:00.0' } });
    expect(e.path).toBe('sys/bus/pci/devices/0000:05:00.0');
    expect(e.message).toMatch(/loops/);
  });
  it('a device link that leaves the snapshot', () => {
    const e = fails({
      ...baseTree(),
      'sys/bus/pci/devices/0000:05:00.0': { link: '../../../../../0000:05:00.0' },
    });
    expect(e.path).toBe('sys/bus/pci/devices/0000:05:00.0');
    expect(e.message).toMatch(/points outside the snapshot/);
  });
  it('a device link to a directory of another name', () => {
    const e = fails({
      ...baseTree(),
      'sys/bus/pci/devices/0000:05:00.0': { link: '../../../devices/pci0000:00/0000:00:02.0' },
    });
    expect(e.message).toMatch(/a directory of another name/);
  });
  it('a function outside any PCI hierarchy', () => {
    const e = fails({
      ...baseTree(),
      'sys/bus/pci/devices/0000:05:00.0': { link: '../../../devices/platform/0000:05:00.0' },
      'sys/devices/platform/0000:05:00.0/config': config({ vendor: 1, device: 2, classCode: 0x020000 }),
    });
    expect(e.path).toBe('sys/devices/platform/0000:05:00.0');
    expect(e.message).toMatch(/neither a host bridge \(pciDDDD:BB\) nor a PCI bridge/);
  });
});
