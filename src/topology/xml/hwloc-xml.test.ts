// Hand-made hwloc documents for what the real fixtures lack: the v1 format, broken input, and the
// corner cases of nesting. The real files are read in test/fixtures-xml.test.ts.
import { describe, expect, it } from 'vitest';
import { isUnknown } from '../../hw/pci.js';
import { TopologyError } from '../errors.js';
import { readHwlocXml } from './hwloc-xml.js';

const PATH = 'machines/test.xml';

/** A v2 document: one Package with its NUMA node and one host bridge holding `io`. */
const v2 = (io: string, extra = ''): string => `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0">
    <info name="Architecture" value="x86_64"/>
    <object type="Package" os_index="0">
      <info name="CPUVendor" value="AuthenticAMD"/>
      <info name="CPUFamilyNumber" value="25"/>
      <info name="CPUModelNumber" value="1"/>
      <info name="CPUModel" value="AMD EPYC 7763 64-Core Processor"/>
      <object type="NUMANode" os_index="3"/>
      <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="0000:[40-4f]">${io}</object>
    </object>${extra}
  </object>
</topology>`;

const gpu = (busid: string, extra = ''): string =>
  `<object type="PCIDev" pci_busid="${busid}" pci_type="0302 [10de:20b0] [10de:134f] a1 00" pci_link_speed="31.507692"${extra}><object type="OSDev" name="nvml0" osdev_type="12"/><object type="OSDev" name="cuda0" osdev_type="5"/></object>`;

const rp = (busid: string, range: string, inner: string): string =>
  `<object type="Bridge" bridge_type="1-1" depth="1" bridge_pci="${range}" pci_busid="${busid}" pci_type="0604 [1022:1483] [0000:0000] 00 00">${inner}</object>`;

function thrown(f: () => unknown): TopologyError {
  try {
    f();
  } catch (e) {
    if (e instanceof TopologyError) return e;
    throw new Error(`expected a TopologyError, got ${String(e)}`);
  }
  throw new Error('expected a TopologyError, nothing was thrown');
}

describe('readHwlocXml on a v2 document', () => {
  const m = readHwlocXml(v2(rp('0000:40:01.1', '0000:[41-41]', gpu('0000:41:00.0'))), PATH);

  it('builds the host bridge, the root port and the GPU', () => {
    expect(m.source).toEqual({ kind: 'hwloc-xml', path: PATH });
    expect(m.name).toBe('test');
    expect(m.hostBridges.map((h) => [h.name, h.rootBus, h.numaNode])).toEqual([['pci0000:40', 0x40, 3]]);
    expect(m.functions.map((f) => f.name)).toEqual(['0000:40:01.1', '0000:41:00.0']);
  });

  it('decodes pci_type, bus ranges and OS devices', () => {
    const [port, g] = m.functions;
    expect(port!.headerType).toBe(1);
    expect([port!.secondaryBus, port!.subordinateBus]).toEqual([0x41, 0x41]);
    expect(g!.bridge).toBe(port);
    expect([g!.vendor, g!.device, g!.subsystemVendor, g!.subsystemDevice]).toEqual([
      0x10de, 0x20b0, 0x10de, 0x134f,
    ]);
    expect(g!.classCode).toBe(0x030200);
    expect(g!.revision).toBe(0xa1);
    expect(g!.headerType).toBe(0);
    expect(g!.osNames).toEqual(['nvml0', 'cuda0']);
    expect(g!.link?.bandwidthGBps).toBeCloseTo(31.507692);
    expect(port!.link).toBeNull();
    expect(g!.numaNode).toBe(3);
  });

  it('records config-space facts as unknown, never as absent', () => {
    for (const f of m.functions) {
      for (const v of [f.portType, f.acs, f.sriov]) {
        expect(isUnknown(v)).toBe(true);
        expect(isUnknown(v) && v.reason).toBe('hwloc XML has no config space');
      }
    }
  });

  it('reads the CPU from Package and Machine infos', () => {
    expect(m.cpu).toEqual({
      vendorId: 'AuthenticAMD',
      family: 25,
      model: 1,
      modelName: 'AMD EPYC 7763 64-Core Processor',
      arch: 'x86_64',
      sockets: 1,
    });
    expect([m.numaNodes, m.cmdline, m.iommu]).toEqual([1, null, null]);
  });

  it('puts prog-if into the low byte of the class code', () => {
    const nvme = `<object type="PCIDev" pci_busid="0000:40:03.0" pci_type="0108 [144d:a80a] [144d:a801] 00 02"/>`;
    expect(readHwlocXml(v2(nvme), PATH).functions[0]!.classCode).toBe(0x010802);
  });

  it('reads a pci_type without prog-if (hwloc before 2021) and says so', () => {
    const old = `<object type="PCIDev" pci_busid="0000:40:03.0" pci_type="0108 [144d:a80a] [144d:a801] 00"/>`;
    const m2 = readHwlocXml(v2(old), PATH);
    expect(m2.functions[0]!.classCode).toBe(0x010800);
    expect(m2.notes.some((n) => n.includes('no prog-if'))).toBe(true);
  });

  it('marks functions that share a slot as multi-function', () => {
    const two = `${gpu('0000:40:05.0')}${gpu('0000:40:05.1')}${gpu('0000:40:06.0')}`;
    const fs = readHwlocXml(v2(two), PATH).functions;
    expect(fs.map((f) => f.multifunction)).toEqual([true, true, false]);
  });
});

describe('readHwlocXml NUMA locality', () => {
  it('takes the NUMA node of a v1 NUMANode ancestor (and counts v1 Sockets)', () => {
    const doc = `<?xml version="1.0"?><!DOCTYPE topology SYSTEM "hwloc.dtd"><topology>
      <object type="Machine"><info name="Architecture" value="x86_64"/>
        <object type="NUMANode" os_index="0"><object type="Socket" os_index="0"><info name="CPUModel" value="Opteron"/></object></object>
        <object type="NUMANode" os_index="1"><object type="Socket" os_index="1"/>
          <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="0000:[80-80]">${gpu('0000:80:00.0')}</object>
        </object>
      </object></topology>`;
    const m = readHwlocXml(doc, PATH);
    expect(m.hostBridges[0]!.numaNode).toBe(1);
    expect([m.numaNodes, m.cpu?.sockets, m.cpu?.modelName]).toEqual([2, 2, 'Opteron']);
  });

  it('leaves the node unknown when the host bridge hangs off an object with several NUMA nodes', () => {
    const doc = `<topology version="2.0"><object type="Machine">
      <object type="Group"><object type="Package" os_index="0"><object type="NUMANode" os_index="0"/></object>
        <object type="Package" os_index="2"><object type="NUMANode" os_index="2"/></object>
        <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="0000:[00-00]">${gpu('0000:00:02.0')}</object>
      </object></object></topology>`;
    const m = readHwlocXml(doc, PATH);
    expect(m.hostBridges[0]!.numaNode).toBeNull();
    expect(m.functions[0]!.numaNode).toBeNull();
    expect(m.notes).toContain(
      'host bridge pci0000:00: attached to a Group local to NUMA nodes 0,2; its NUMA node is unknown',
    );
    expect(m.cpu).toBeNull();
    expect(m.notes.some((n) => n.startsWith('hwloc XML names no CPU'))).toBe(true);
  });
});

describe('readHwlocXml keeps pruned and odd trees as hwloc wrote them', () => {
  it('keeps a child outside its bridge bus range and notes it', () => {
    const m = readHwlocXml(v2(rp('0000:40:01.1', '0000:[41-41]', gpu('0000:42:00.0'))), PATH);
    expect(m.byName.get('0000:42:00.0')!.bridge?.name).toBe('0000:40:01.1');
    expect(m.notes).toContain(
      "0000:42:00.0 sits below bridge 0000:40:01.1, outside its bus range 0000:[41-41]; hwloc's nesting is kept",
    );
  });

  it('drops the out-of-range copy of a duplicated address and notes it', () => {
    const io = `${rp('0000:40:01.1', '0000:[41-41]', gpu('0000:41:00.0'))}${rp('0000:40:02.1', '0000:[42-42]', gpu('0000:41:00.0'))}`;
    const m = readHwlocXml(v2(io), PATH);
    expect(m.byName.get('0000:41:00.0')!.bridge?.name).toBe('0000:40:01.1');
    expect(m.functions).toHaveLength(3);
    expect(m.notes.some((n) => n.startsWith('0000:41:00.0 appears twice') && n.endsWith('is dropped'))).toBe(
      true,
    );
  });

  it('prefers the in-range copy when the out-of-range one comes first', () => {
    const io = `${rp('0000:40:02.1', '0000:[42-42]', gpu('0000:41:00.0'))}${rp('0000:40:01.1', '0000:[41-41]', gpu('0000:41:00.0'))}`;
    const m = readHwlocXml(v2(io), PATH);
    expect(m.byName.get('0000:41:00.0')!.bridge?.name).toBe('0000:40:01.1');
  });
});

describe('readHwlocXml rejects bad input with a TopologyError naming the file', () => {
  const cases: [string, string, RegExp][] = [
    [
      'malformed XML',
      '<topology version="2.0"><object type="Machine"></topology>',
      /not well-formed XML \(line 1\)/,
    ],
    [
      'an NCCL file',
      '<system version="1"><cpu numaid="0"/></system>',
      /root element is <system>, not <topology>/,
    ],
    [
      'XML that is neither hwloc nor NCCL',
      '<?xml version="1.0"?><machine name="x"/>',
      /root element is <machine>, not <topology>/,
    ],
    ['an empty topology', '<topology version="2.0"></topology>', /holds no <object>/],
    ['a garbled busid', v2(gpu('0000:4g:00.0')), /pci_busid "0000:4g:00.0".*not a PCI address/],
    ['a device number over 0x1f', v2(gpu('0000:41:20.0')), /not a PCI address/],
    [
      'a garbled pci_type',
      v2(`<object type="PCIDev" pci_busid="0000:40:03.0" pci_type="0108 [144d] 00"/>`),
      /pci_type is missing or not/,
    ],
    [
      'a duplicated address inside both ranges',
      v2(`${gpu('0000:40:03.0')}${gpu('0000:40:03.0')}`),
      /0000:40:03.0 appears twice.*two PCI objects have one address/,
    ],
    [
      'a PCIDev with PCI children',
      v2(
        `<object type="PCIDev" pci_busid="0000:40:03.0" pci_type="0200 [8086:1521] [8086:0001] 01 00">${gpu('0000:41:00.0')}</object>`,
      ),
      /only a bridge can have PCI children/,
    ],
    [
      'a host bridge nested in the PCI tree',
      v2(
        rp(
          '0000:40:01.1',
          '0000:[41-41]',
          '<object type="Bridge" bridge_type="0-1" bridge_pci="0000:[41-41]"/>',
        ),
      ),
      /bridge_type "0-1" inside bridge 0000:40:01.1/,
    ],
    ['a PCI object outside any host bridge', v2('', gpu('0000:41:00.0')), /is not inside a host bridge/],
    ['a bridge without a bus range', v2(rp('0000:40:01.1', '41-41', '')), /bridge_pci is missing or not/],
    [
      'two host bridges on one root bus',
      v2('', '<object type="Bridge" bridge_type="0-1" bridge_pci="0000:[40-40]"/>'),
      /two host bridges have root bus 0000:40/,
    ],
  ];
  it.each(cases)('%s', (_what, text, message) => {
    const e = thrown(() => readHwlocXml(text, PATH));
    expect(e.path).toBe(PATH);
    expect(e.message).toMatch(message);
  });
});
