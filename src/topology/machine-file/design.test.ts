// Design features of machine files beyond the built-in machines: conventional PCI behind a PCIe-to-PCI
// bridge, bus offsets, explicit BAR addresses and bus numbers, SR-IOV, external-facing ports, links.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeConfig } from '../../hw/pci-config.js';
import { machineFromYaml } from './index.js';

const TEXT = `
name: design
cpu: { vendor: intel, family: 6, model: 85, name: test cpu }
kernel: { cmdline: "intel_iommu=on pci=noats" }
iommu: { vendor: intel }
hostBridges:
  - hostBridgeId: 8086:2020
    numaNode: 1
    busOffset: 0x1000000000
    mmio: { base: 0x1080000000, size: 256M }
    devices:
      - kind: root-port
        id: 8086:2030
        link: { gen: 4, width: 16 }
        secondaryBus: 0x10
        externalFacing: true
        devices:
          - kind: endpoint
            id: 15b3:101b
            class: nic
            link: { gen: 4, width: 8, currentGen: 3 }
            sriov: { totalVfs: 16, vfId: 15b3:101c }
            bars: [{ size: 32M, bits: 64, prefetchable: true, address: "0x200040000000" }]
          - { kind: endpoint, id: 15b3:101b, class: nic }
      - kind: root-port
        id: 8086:2031
        devices:
          - kind: pci-bridge
            id: 12d8:e113
            devices:
              - { kind: endpoint, id: 8086:1076, class: nic, bars: [{ size: 128K }] }
              - kind: pci-bridge
                id: 8086:244e
                devices:
                  - { kind: endpoint, id: 10ec:8139, class: nic }
`;

describe('machine-file design features', () => {
  const { machine: m, bootLog } = machineFromYaml(TEXT, 'design.yaml', { kernel: '6.1' });
  const f = (n: string) => m.byName.get(n)!;

  it('numbers buses depth-first and honours an explicit secondary bus', () => {
    expect([f('0000:00:01.0').secondaryBus, f('0000:00:01.0').subordinateBus]).toEqual([0x10, 0x10]);
    expect([f('0000:00:02.0').secondaryBus, f('0000:00:02.0').subordinateBus]).toEqual([0x11, 0x13]);
    expect(f('0000:12:01.0').secondaryBus).toBe(0x13);
    expect(f('0000:13:00.0').bridge).toBe(f('0000:12:01.0'));
    expect(f('0000:11:00.0').portType).toBe('pcie-to-pci-bridge');
    // Conventional devices: no PCIe capability, 256 bytes, consecutive slots on the bus.
    expect([f('0000:12:00.0').portType, f('0000:12:00.0').config!.length]).toEqual(['none', 256]);
    expect(f('0000:12:01.0').portType).toBe('none');
  });

  it('applies the bus offset: BAR registers hold bus addresses, the model both', () => {
    const bar = f('0000:12:00.0').bars[0]!;
    expect(bar.cpuStart - bar.busStart).toBe(0x1000000000n);
    expect(bar.cpuStart >= 0x1080000000n && bar.cpuStart < 0x1090000000n).toBe(true);
    const reg = new DataView(f('0000:12:00.0').config!.buffer).getUint32(0x10, true);
    expect(BigInt((reg & ~0xf) >>> 0)).toBe(bar.busStart);
  });

  it('keeps an explicit BAR address and opens the windows above it', () => {
    const nic = f('0000:10:00.0');
    expect(nic.bars[0]!.cpuStart).toBe(0x200040000000n);
    expect(f('0000:10:00.1').bars[0]!.cpuStart).not.toBe(0x200040000000n);
    const cfg = new DataView(f('0000:00:01.0').config!.buffer);
    const prefBase =
      (BigInt(cfg.getUint32(0x28, true)) << 32n) | (BigInt(cfg.getUint16(0x24, true) & 0xfff0) << 16n);
    expect(prefBase <= nic.bars[0]!.busStart).toBe(true);
  });

  it('encodes SR-IOV, trained links and multifunction devices', () => {
    const nic = f('0000:10:00.0');
    expect(nic.sriov).toEqual({ totalVfs: 16, numVfs: 0, vfOffset: 1, vfStride: 1, vfDevice: 0x101c });
    expect(nic.link).toEqual({ speedGts: 8, width: 8, maxSpeedGts: 16, maxWidth: 8 });
    expect(f('0000:00:01.0').link).toEqual({ speedGts: 8, width: 8, maxSpeedGts: 16, maxWidth: 16 });
    expect([nic.multifunction, f('0000:10:00.1').multifunction]).toEqual([true, true]);
    expect(decodeConfig(nic.config!).sriov).toEqual(nic.sriov);
  });

  it('programs ACS with Translation Blocking for pci=noats, logs it, and takes NUMA and CPU facts', () => {
    const rp = f('0000:00:02.0').acs;
    expect(rp.state === 'present' ? rp.ctrl : -1).toBe(0x001f);
    expect(bootLog).toEqual([{ level: 'info', text: 'PCIe: ATS is disabled' }]);
    expect(f('0000:12:00.0').numaNode).toBe(1);
    expect(m.numaNodes).toBe(2);
    expect(m.cpu?.vendorId).toBe('GenuineIntel');
  });
});

describe('the example of docs/machine-file.md', () => {
  it('builds and gives the addresses and ACS state the text says', () => {
    const md = readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'machine-file.md'), 'utf8');
    const text = /```yaml\n([\s\S]*?)```/.exec(md)![1]!;
    const { machine, bootLog } = machineFromYaml(text, 'example.yaml', { kernel: '6.1' });
    const ctrl = (n: string) => {
      const a = machine.byName.get(n)!.acs;
      return a.state === 'present' ? a.ctrl : -1;
    };
    expect([
      machine.byName.get('0000:00:01.0')!.secondaryBus,
      machine.byName.get('0000:00:01.0')!.subordinateBus,
    ]).toEqual([1, 5]);
    expect(machine.byName.get('0000:05:00.0')!.hints?.cmb?.size).toBe(64n << 20n);
    expect([ctrl('0000:02:08.0'), ctrl('0000:02:09.0'), ctrl('0000:02:0a.0')]).toEqual([
      0x0011, 0x0011, 0x001d,
    ]);
    expect(bootLog).toHaveLength(2);
  });
});
