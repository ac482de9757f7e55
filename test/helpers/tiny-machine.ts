// Small hand-built machines for unit tests: a compact tree notation turned into a MachineSpec.

import { buildMachine, type FunctionSpec, hostBridgeName } from '../../src/hw/machine-builder.js';
import type { AcsInfo, CpuInfo, Machine } from '../../src/hw/pci.js';
import type { PciePortType } from '../../src/hw/pci-regs.js';

export interface TinyNode {
  /** 'rp' root port, 'usp'/'dsp' switch ports, 'ep' endpoint, 'hb' host-bridge function at 00.0. */
  kind: 'rp' | 'usp' | 'dsp' | 'ep' | 'hb';
  /** ACS control bits (present capability) or undefined for no capability, 'unknown' for unknown. */
  acs?: number | 'unknown' | undefined;
  id?: [number, number];
  driver?: string;
  fn?: number;
  children?: TinyNode[];
  name?: string;
}

export const AMD_ZEN: CpuInfo = {
  vendorId: 'AuthenticAMD',
  family: 0x19,
  model: 1,
  modelName: 'AMD EPYC',
  arch: 'x86_64',
  sockets: 1,
};
export const QEMU64: CpuInfo = {
  vendorId: 'AuthenticAMD',
  family: 15,
  model: 107,
  modelName: 'QEMU Virtual CPU',
  arch: 'x86_64',
  sockets: 1,
};
export const SKYLAKE: CpuInfo = {
  vendorId: 'GenuineIntel',
  family: 6,
  model: 85,
  modelName: 'Intel Xeon',
  arch: 'x86_64',
  sockets: 2,
};

const PORT: Record<TinyNode['kind'], PciePortType> = {
  rp: 'root-port',
  usp: 'upstream-port',
  dsp: 'downstream-port',
  ep: 'endpoint',
  hb: 'rc-integrated-endpoint',
};

/** Build a machine: one tree of nodes per host bridge. Bus numbers are assigned depth-first. */
export function tinyMachine(hosts: TinyNode[][], cpu: CpuInfo | null = QEMU64): Machine {
  const fns: FunctionSpec[] = [];
  let nextBus = 0;
  const hbs = hosts.map((_, i) => ({ name: hostBridgeName(0, i * 0x40), domain: 0, rootBus: i * 0x40 }));
  const place = (nodes: TinyNode[], bus: number, parent: FunctionSpec['parent']): void => {
    let slot = 0;
    for (const n of nodes) {
      const fn = n.fn ?? 0;
      const dev = n.kind === 'hb' ? 0 : n.fn !== undefined && n.fn > 0 ? slot - 1 : slot++;
      if (n.kind === 'hb' && slot === 0) slot = 1;
      const name = `0000:${bus.toString(16).padStart(2, '0')}:${dev.toString(16).padStart(2, '0')}.${fn}`;
      const bridge = n.kind === 'rp' || n.kind === 'usp' || n.kind === 'dsp';
      const acs: AcsInfo =
        n.acs === undefined
          ? { state: 'absent' }
          : n.acs === 'unknown'
            ? { state: 'unknown', reason: 'test' }
            : { state: 'present', capOffset: 0x100, cap: 0x5f, ctrl: n.acs };
      const sec = bridge ? ++nextBus : null;
      fns.push({
        name,
        parent,
        vendor: n.id?.[0] ?? 0x1b36,
        device: n.id?.[1] ?? (bridge ? 0x000c : 0x0010),
        classCode: n.kind === 'hb' ? 0x060000 : bridge ? 0x060400 : 0x010802,
        headerType: bridge ? 1 : 0,
        portType: PORT[n.kind],
        acs,
        secondaryBus: sec,
        subordinateBus: sec,
        driver: n.driver ?? (bridge ? 'pcieport' : n.kind === 'ep' ? 'nvme' : null),
      });
      if (bridge && sec !== null) place(n.children ?? [], sec, { kind: 'bridge', name });
    }
  };
  hosts.forEach((nodes, i) => {
    nextBus = i * 0x40;
    place(nodes, i * 0x40, { kind: 'host', hostBridge: hbs[i]!.name });
  });
  return buildMachine({
    name: 'tiny',
    source: { kind: 'builtin', path: 'test' },
    cpu,
    cmdline: '',
    iommu: null,
    hostBridges: hbs,
    functions: fns,
  });
}
