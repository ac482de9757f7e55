// Small machines with BARs and links for fabric and device tests and benchmarks (the tiny-machine
// helper of test/ has neither). Mirrors no kernel file.
//
//   pci0000:00 (node 0)
//     00:01.0 root port (Gen4 x16) ── 01:00.0 switch upstream
//                                       ├─ 02:00.0 downstream (Gen4 x16) ── 03:00.0 NVMe (BAR0 regs, BAR2 CMB)
//                                       ├─ 02:01.0 downstream (Gen4 x16) ── 04:00.0 GPU (BAR0 regs, BAR1 VRAM)
//                                       └─ 02:02.0 downstream (Gen3 x4)  ── 05:00.0 NIC (BAR0)
//     00:02.0 root port (Gen4 x16) ── 06:00.0 GPU
//     00:1f.0 integrated DMA engine (BAR0)
//   pci0000:80 (node 1)
//     80:01.0 root port (Gen4 x16) ── 81:00.0 NVMe (BAR0 regs, BAR2 CMB)

import { busAddr, bytes, GiB, KiB, MiB, physAddr } from '../addr.js';
import { buildMachine, type FunctionSpec } from '../machine-builder.js';
import type { AcsInfo, CpuInfo, Machine, PciBar, PcieLink } from '../pci.js';
import type { PciePortType } from '../pci-regs.js';

export const ZEN3: CpuInfo = {
  vendorId: 'AuthenticAMD',
  family: 0x19,
  model: 1,
  modelName: 'AMD EPYC 7763',
  arch: 'x86_64',
  sockets: 2,
};
/** A CPU no forwarding rule names (an old Intel client part): peer forwarding refused. */
export const UNKNOWN_CPU: CpuInfo = {
  vendorId: 'GenuineIntel',
  family: 6,
  model: 58,
  modelName: 'Intel Core i7-3770',
  arch: 'x86_64',
  sockets: 1,
};

export interface SwitchBoxOptions {
  /** ACS control of the switch downstream ports (0: none set; e.g. RR|CR 0x0c). */
  readonly dspAcs?: number;
  /** ACS control of the root ports. */
  readonly rootPortAcs?: number;
  readonly cpu?: CpuInfo;
  readonly iommu?: boolean;
}

const link = (gts: number, width: number): PcieLink => ({
  speedGts: gts,
  width,
  maxSpeedGts: gts,
  maxWidth: width,
});

const acs = (ctrl: number): AcsInfo => ({ state: 'present', capOffset: 0x148, cap: 0x7f, ctrl });

const bar = (
  index: number,
  kind: 'mem32' | 'mem64',
  at: bigint,
  size: bigint,
  prefetchable = false,
): PciBar => ({
  index,
  kind,
  prefetchable,
  cpuStart: physAddr(at),
  busStart: busAddr(at),
  size: bytes(size),
});

type Parent = FunctionSpec['parent'];
const host = (hb: string): Parent => ({ kind: 'host', hostBridge: hb });
const under = (name: string): Parent => ({ kind: 'bridge', name });

function fn(
  name: string,
  parent: Parent,
  portType: PciePortType,
  extra: Partial<FunctionSpec> & { classCode: number },
): FunctionSpec {
  const bridge = portType === 'root-port' || portType === 'upstream-port' || portType === 'downstream-port';
  return {
    name,
    parent,
    vendor: 0x1b36,
    device: 0x0001,
    headerType: bridge ? 1 : 0,
    portType,
    acs: { state: 'absent' },
    ...extra,
  };
}

const NP = 0x80000000n;
const PF = 0x200000000000n;

/** The switch box above. BARs: NVMe 03:00.0 BAR0 at 0x8000_0000 (16 KiB), CMB BAR2 at PF (64 MiB) ... */
export function switchBox(o: SwitchBoxOptions = {}): Machine {
  const rp = o.rootPortAcs === undefined ? { state: 'absent' as const } : acs(o.rootPortAcs);
  const dsp = o.dspAcs === undefined ? { state: 'absent' as const } : acs(o.dspAcs);
  const BR = 0x060400;
  const fns: FunctionSpec[] = [
    fn('0000:00:01.0', host('pci0000:00'), 'root-port', {
      classCode: BR,
      acs: rp,
      link: link(16, 16),
      secondaryBus: 1,
      subordinateBus: 5,
    }),
    fn('0000:01:00.0', under('0000:00:01.0'), 'upstream-port', {
      classCode: BR,
      link: link(16, 16),
      secondaryBus: 2,
      subordinateBus: 5,
    }),
    fn('0000:02:00.0', under('0000:01:00.0'), 'downstream-port', {
      classCode: BR,
      acs: dsp,
      link: link(16, 16),
      secondaryBus: 3,
      subordinateBus: 3,
    }),
    fn('0000:02:01.0', under('0000:01:00.0'), 'downstream-port', {
      classCode: BR,
      acs: dsp,
      link: link(16, 16),
      secondaryBus: 4,
      subordinateBus: 4,
    }),
    fn('0000:02:02.0', under('0000:01:00.0'), 'downstream-port', {
      classCode: BR,
      acs: dsp,
      link: link(8, 4),
      secondaryBus: 5,
      subordinateBus: 5,
    }),
    fn('0000:03:00.0', under('0000:02:00.0'), 'endpoint', {
      classCode: 0x010802,
      link: link(16, 16),
      bars: [bar(0, 'mem64', NP, 16n * KiB), bar(2, 'mem64', PF, 64n * MiB, true)],
      hints: { cmb: { bar: 2, size: bytes(64n * MiB) } },
    }),
    fn('0000:04:00.0', under('0000:02:01.0'), 'endpoint', {
      classCode: 0x030200,
      link: link(16, 16),
      bars: [bar(0, 'mem32', NP + 16n * MiB, 16n * MiB), bar(1, 'mem64', PF + GiB, GiB, true)],
      hints: { vram: { bar: 1, size: bytes(GiB) } },
    }),
    fn('0000:05:00.0', under('0000:02:02.0'), 'endpoint', {
      classCode: 0x020000,
      link: link(8, 4),
      bars: [bar(0, 'mem64', NP + 32n * MiB, MiB)],
    }),
    fn('0000:00:02.0', host('pci0000:00'), 'root-port', {
      classCode: BR,
      acs: rp,
      link: link(16, 16),
      secondaryBus: 6,
      subordinateBus: 6,
    }),
    fn('0000:06:00.0', under('0000:00:02.0'), 'endpoint', {
      classCode: 0x030200,
      link: link(16, 16),
      bars: [bar(0, 'mem32', NP + 64n * MiB, 16n * MiB), bar(1, 'mem64', PF + 4n * GiB, GiB, true)],
      hints: { vram: { bar: 1, size: bytes(GiB) } },
    }),
    fn('0000:00:1f.0', host('pci0000:00'), 'rc-integrated-endpoint', {
      classCode: 0x088000,
      bars: [bar(0, 'mem64', NP + 96n * MiB, 16n * KiB)],
    }),
    fn('0000:80:01.0', host('pci0000:80'), 'root-port', {
      classCode: BR,
      acs: rp,
      link: link(16, 16),
      secondaryBus: 0x81,
      subordinateBus: 0x81,
    }),
    fn('0000:81:00.0', under('0000:80:01.0'), 'endpoint', {
      classCode: 0x010802,
      link: link(16, 4),
      bars: [bar(0, 'mem64', NP + 128n * MiB, 16n * KiB), bar(2, 'mem64', PF + 8n * GiB, 64n * MiB, true)],
      hints: { cmb: { bar: 2, size: bytes(64n * MiB) } },
    }),
  ];
  return buildMachine({
    name: 'switch-box',
    source: { kind: 'builtin', path: 'test' },
    cpu: o.cpu ?? ZEN3,
    cmdline: '',
    iommu: o.iommu ?? false,
    numaNodes: 2,
    hostBridges: [
      { name: 'pci0000:00', domain: 0, rootBus: 0, numaNode: 0 },
      { name: 'pci0000:80', domain: 0, rootBus: 0x80, numaNode: 1 },
    ],
    functions: fns,
  });
}
