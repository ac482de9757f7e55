// Hand-made NCCL documents for what the real fixtures lack: broken input and the corner cases of
// host-bridge synthesis. The real files are read in test/fixtures-xml.test.ts.
import { describe, expect, it } from 'vitest';
import { isUnknown } from '../../hw/pci.js';
import { TopologyError } from '../errors.js';
import { ncclCpuFamily, readNcclXml } from './nccl-xml.js';

const PATH = 'dumps/nccl.xml';

const sys = (body: string): string => `<system version="2">${body}</system>`;
const cpu = (numaid: string, body: string): string =>
  `<cpu numaid="${numaid}" affinity="ff" arch="x86_64" vendor="AuthenticAMD" familyid="175" modelid="1">${body}</cpu>`;
const sw = (busid: string, body: string): string =>
  `<pci busid="${busid}" class="0x060400" vendor="0x1000" device="0xc030" link_speed="16.0 GT/s PCIe" link_width="16">${body}</pci>`;
const gpu = (busid: string, dev: number): string =>
  `<pci busid="${busid}" class="0x030200" vendor="10de" device="0x2330" subsystem_vendor="0x10de" subsystem_device="0x16c1" link_speed="32.0 GT/s PCIe" link_width="16"><gpu dev="${dev}" sm="90"><nvlink target="0000:00:00.0" count="18" tclass="0x068000"/></gpu></pci>`;
const nic = (busid: string, name: string): string =>
  `<pci busid="${busid}" class="0x020700" link_speed="" link_width=""><nic><net name="${name}" dev="0"/></nic></pci>`;

function thrown(f: () => unknown): TopologyError {
  try {
    f();
  } catch (e) {
    if (e instanceof TopologyError) return e;
    throw new Error(`expected a TopologyError, got ${String(e)}`);
  }
  throw new Error('expected a TopologyError, nothing was thrown');
}

describe('readNcclXml', () => {
  const doc = sys(
    cpu(
      '0',
      sw('0000:17:00.0', gpu('0000:19:00.0', 0) + nic('0000:1a:00.0', 'mlx5_0')) +
        nic('0000:20:00.0', 'mlx5_1'),
    ) + cpu('1', sw('0000:97:00.0', gpu('0000:99:00.0', 1))),
  );
  const m = readNcclXml(doc, PATH);

  it('makes one synthetic host bridge per root bus, on its cpu NUMA node', () => {
    expect(m.source).toEqual({ kind: 'nccl-xml', path: PATH });
    expect(m.hostBridges.map((h) => [h.name, h.numaNode])).toEqual([
      ['pci0000:17', 0],
      ['pci0000:20', 0],
      ['pci0000:97', 1],
    ]);
    expect(m.numaNodes).toBe(2);
    expect(m.byName.get('0000:19:00.0')!.bridge?.name).toBe('0000:17:00.0');
    expect(m.byName.get('0000:19:00.0')!.hostBridge.name).toBe('pci0000:17');
  });

  it('reads ids, class, link and OS names, hex with or without 0x', () => {
    const g = m.byName.get('0000:19:00.0')!;
    expect([g.vendor, g.device, g.subsystemVendor, g.subsystemDevice, g.classCode]).toEqual([
      0x10de, 0x2330, 0x10de, 0x16c1, 0x030200,
    ]);
    expect(g.link).toEqual({ speedGts: 32, width: 16, maxSpeedGts: null, maxWidth: null });
    expect(g.osNames).toEqual(['gpu0']);
    expect(m.byName.get('0000:1a:00.0')!.osNames).toEqual(['mlx5_0']);
    expect(m.byName.get('0000:1a:00.0')!.link).toBeNull();
    expect(m.byName.get('0000:17:00.0')!.headerType).toBe(1);
    expect(g.headerType).toBe(0);
    expect(isUnknown(g.acs) && g.acs.reason).toBe('NCCL topology XML has no config space');
  });

  it('notes what it could not read', () => {
    expect(m.notes).toContain('2 <pci> elements carry no vendor/device IDs: recorded as 0x0000');
    expect(m.notes).toContain('2 GPU fabric links (nvlink/xgmi/c2c) are not part of the PCI model: ignored');
    expect(m.notes).toContain('NCCL familyid 175 is cpu family 25');
  });

  it('decodes the CPU of the first <cpu>', () => {
    expect(m.cpu).toEqual({
      vendorId: 'AuthenticAMD',
      family: 25,
      model: 1,
      modelName: '',
      arch: 'x86_64',
      sockets: null,
    });
  });

  it('gives a root bus listed under two CPUs one host bridge per CPU', () => {
    const twice = readNcclXml(
      sys(
        cpu('0', sw('ffff:ff:01.0', gpu('0000:10:1c.0', 0))) +
          cpu('1', sw('ffff:ff:03.0', gpu('0000:90:1c.0', 1))),
      ),
      PATH,
    );
    expect(twice.hostBridges.map((h) => [h.name, h.numaNode])).toEqual([
      ['pciffff:ff', 0],
      ['pciffff:ff@cpu1', 1],
    ]);
    expect(twice.byName.get('0000:90:1c.0')!.hostBridge.numaNode).toBe(1);
  });

  it('reads numaid -1 as an unknown node', () => {
    const u = readNcclXml(sys(cpu('-1', gpu('0000:01:00.0', 0))), PATH);
    expect([u.hostBridges[0]!.numaNode, u.numaNodes]).toEqual([null, null]);
  });

  it('merges a bridge listed twice, identically, below one parent', () => {
    const rep = readNcclXml(
      sys(
        cpu(
          '0',
          sw(
            '0000:c1:00.0',
            sw('0000:c5:00.0', gpu('0000:cf:00.0', 0)) + sw('0000:c5:00.0', gpu('0000:d0:00.0', 1)),
          ),
        ),
      ),
      PATH,
    );
    expect(rep.byName.get('0000:c5:00.0')!.children.map((f) => f.name)).toEqual([
      '0000:cf:00.0',
      '0000:d0:00.0',
    ]);
    expect(rep.notes.some((n) => n.includes('listed 2 times below one parent'))).toBe(true);
  });
});

describe('ncclCpuFamily', () => {
  it('undoes family + (extended family << 4) and passes plain families through', () => {
    expect([143, 175, 6, 25, 15, 0x1af].map(ncclCpuFamily)).toEqual([23, 25, 6, 25, 15, 41]);
  });
});

describe('readNcclXml rejects bad input with a TopologyError naming the file', () => {
  const cases: [string, string, RegExp][] = [
    ['malformed XML', '<system version="2"><cpu numaid="0"></system>', /not well-formed XML/],
    [
      'an hwloc file',
      '<topology version="2.0"><object type="Machine"/></topology>',
      /root element is <topology>, not <system>/,
    ],
    [
      'XML that is neither hwloc nor NCCL',
      '<svg xmlns="http://www.w3.org/2000/svg"/>',
      /root element is <svg>, not <system>/,
    ],
    ['no cpu', sys(''), /holds no <cpu>/],
    [
      'a garbled busid',
      sys(cpu('0', gpu('0000:1g:00.0', 0))),
      /<pci busid="0000:1g:00.0">: busid is missing or not a PCI address/,
    ],
    ['a missing class', sys(cpu('0', '<pci busid="0000:01:00.0"/>')), /class is missing/],
    [
      'an endpoint with pci children',
      sys(cpu('0', `<pci busid="0000:01:00.0" class="0x030200">${gpu('0000:02:00.0', 0)}</pci>`)),
      /class 0x030200 is not a bridge/,
    ],
    [
      'a duplicated endpoint',
      sys(cpu('0', gpu('0000:01:00.0', 0) + gpu('0000:01:00.0', 1))),
      /two <pci> elements have the address 0000:01:00.0/,
    ],
    [
      'a bridge duplicated below different parents',
      sys(
        cpu(
          '0',
          sw('0000:10:00.0', sw('0000:12:00.0', gpu('0000:13:00.0', 0))) +
            sw('0000:20:00.0', sw('0000:12:00.0', gpu('0000:23:00.0', 1))),
        ),
      ),
      /two <pci> elements have the address 0000:12:00.0/,
    ],
  ];
  it.each(cases)('%s', (_what, text, message) => {
    const e = thrown(() => readNcclXml(text, PATH));
    expect(e.path).toBe(PATH);
    expect(e.message).toMatch(message);
  });
});
