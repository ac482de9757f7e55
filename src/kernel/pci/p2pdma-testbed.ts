// Small machines with P2PDMA-capable BARs, for tests and benchmarks of the provider, pagemap and DMA
// code (not a reader of real machines: those live in src/topology).
//
//   pci0000:00 (optional bus offset: bus address = CPU address - busOffset)
//     00:00.0 host bridge 8086:2020 (Skylake-E, whitelisted)
//     00:01.0 root port -- 01:00.0 switch upstream -- 02:0k.0 downstream k -- (3+k):00.0 endpoint k
//     00:1x.0 root port -- bus 0x40+i -- endpoint on its own root port
//
// Every endpoint has BAR 0 (64-bit prefetchable memory, `barBytes`, 1 GiB aligned above 0x380_0000_0000
// by default), BAR 2 (32-bit memory, 16 KiB, not 2 MiB aligned) and BAR 4 (I/O ports).

import { type BusAddr, busAddr, bytes, GiB, type PhysAddr, physAddr } from '../../hw/addr.js';
import { buildMachine, type FunctionSpec, hostBridgeName } from '../../hw/machine-builder.js';
import type { AcsInfo, CpuInfo, Machine, PciBar } from '../../hw/pci.js';

export interface P2pMachineOptions {
  /** Endpoints behind one switch (default 2). */
  readonly switchEndpoints?: number | undefined;
  /** Endpoints each on its own root port (default 1). */
  readonly rootPortEndpoints?: number | undefined;
  /** Host-bridge offset: BAR bus addresses are CPU addresses minus this (default 0). */
  readonly busOffset?: bigint | undefined;
  /** BAR 0 size (default 256 MiB). */
  readonly barBytes?: bigint | undefined;
  /** ACS control on the switch downstream ports (default: no ACS capability). */
  readonly dspAcsCtrl?: number | undefined;
  readonly cpu?: CpuInfo | null | undefined;
  /** Host-bridge function ID (default Intel 0x2020, whitelisted in every profile). */
  readonly hostBridgeId?: readonly [number, number] | undefined;
  readonly numaNodes?: number | undefined;
}

export const TESTBED_CPU: CpuInfo = {
  vendorId: 'GenuineIntel',
  family: 6,
  model: 85,
  modelName: 'Intel Xeon (testbed)',
  arch: 'x86_64',
  sockets: 1,
};

/** CPU address of endpoint `i`'s BAR 0. */
export const testbedBar0 = (i: number, barBytes: bigint = 256n * 1024n * 1024n): PhysAddr =>
  physAddr(0x380_0000_0000n + BigInt(i) * (barBytes > GiB ? barBytes : GiB));

const bar = (index: number, kind: PciBar['kind'], cpu: bigint, size: bigint, busOffset: bigint): PciBar => ({
  index,
  kind,
  prefetchable: kind === 'mem64',
  cpuStart: physAddr(cpu),
  busStart: busAddr(kind === 'io' ? cpu : cpu - busOffset) as BusAddr,
  size: bytes(size),
});

function endpoint(
  name: string,
  parent: FunctionSpec['parent'],
  i: number,
  o: P2pMachineOptions,
): FunctionSpec {
  const off = o.busOffset ?? 0n;
  const size = o.barBytes ?? 256n * 1024n * 1024n;
  return {
    name,
    parent,
    vendor: 0x144d,
    device: 0xa808,
    classCode: 0x010802,
    headerType: 0,
    portType: 'endpoint',
    acs: { state: 'absent' },
    driver: 'nvme',
    numaNode: 0,
    bars: [
      bar(0, 'mem64', testbedBar0(i, size), size, off),
      bar(2, 'mem32', 0xfe00_0000n + BigInt(i) * 0x1_0000n, 0x4000n, off),
      bar(4, 'io', 0x1000n + BigInt(i) * 0x100n, 0x100n, off),
    ],
  };
}

function bridge(
  name: string,
  parent: FunctionSpec['parent'],
  port: 'root-port' | 'upstream-port' | 'downstream-port',
  sec: number,
  acs: AcsInfo,
): FunctionSpec {
  return {
    name,
    parent,
    vendor: 0x8086,
    device: 0x2030,
    classCode: 0x060400,
    headerType: 1,
    portType: port,
    acs,
    secondaryBus: sec,
    subordinateBus: sec,
    driver: 'pcieport',
  };
}

const hx = (n: number): string => n.toString(16).padStart(2, '0');

/** A machine with endpoints behind one switch and endpoints on their own root ports. */
export function p2pMachine(o: P2pMachineOptions = {}): Machine {
  const hb = hostBridgeName(0, 0);
  const host = { kind: 'host', hostBridge: hb } as const;
  const [hv, hd] = o.hostBridgeId ?? [0x8086, 0x2020];
  const fns: FunctionSpec[] = [
    {
      name: '0000:00:00.0',
      parent: host,
      vendor: hv,
      device: hd,
      classCode: 0x060000,
      headerType: 0,
      portType: 'rc-integrated-endpoint',
      acs: { state: 'absent' },
    },
  ];
  const nSw = o.switchEndpoints ?? 2;
  const acs: AcsInfo =
    o.dspAcsCtrl === undefined
      ? { state: 'absent' }
      : { state: 'present', capOffset: 0x100, cap: 0x5f, ctrl: o.dspAcsCtrl };
  let ep = 0;
  if (nSw > 0) {
    fns.push(bridge('0000:00:01.0', host, 'root-port', 1, { state: 'absent' }));
    fns.push(
      bridge('0000:01:00.0', { kind: 'bridge', name: '0000:00:01.0' }, 'upstream-port', 2, {
        state: 'absent',
      }),
    );
    for (let k = 0; k < nSw; k++) {
      const dsp = `0000:02:${hx(k)}.0`;
      fns.push(bridge(dsp, { kind: 'bridge', name: '0000:01:00.0' }, 'downstream-port', 3 + k, acs));
      fns.push(endpoint(`0000:${hx(3 + k)}:00.0`, { kind: 'bridge', name: dsp }, ep++, o));
    }
  }
  for (let r = 0; r < (o.rootPortEndpoints ?? 1); r++) {
    const rp = `0000:00:${hx(0x10 + r)}.0`;
    fns.push(bridge(rp, host, 'root-port', 0x40 + r, { state: 'absent' }));
    fns.push(endpoint(`0000:${hx(0x40 + r)}:00.0`, { kind: 'bridge', name: rp }, ep++, o));
  }
  return buildMachine({
    name: 'p2p-testbed',
    source: { kind: 'builtin', path: 'testbed' },
    cpu: o.cpu === undefined ? TESTBED_CPU : o.cpu,
    cmdline: '',
    iommu: false,
    numaNodes: o.numaNodes ?? 1,
    hostBridges: [{ name: hb, domain: 0, rootBus: 0, numaNode: 0 }],
    functions: fns,
  });
}

/**
 * `n` integrated endpoints (up to 256 per PCI domain, one host bridge per domain), each with a 2 MiB
 * BAR 0 at its own 2 MiB-aligned address: a machine with many small providers.
 */
export function manyProvidersMachine(n: number, cpu: CpuInfo = TESTBED_CPU): Machine {
  const hosts = Array.from({ length: Math.ceil(n / 256) }, (_, d) => ({
    name: hostBridgeName(d, 0),
    domain: d,
    rootBus: 0,
  }));
  const fns: FunctionSpec[] = [];
  for (let i = 0; i < n; i++) {
    const d = Math.floor(i / 256);
    const devfn = i % 256;
    const name = `${d.toString(16).padStart(4, '0')}:00:${hx(devfn >> 3)}.${devfn & 7}`;
    // Spread the BARs unevenly (gaps of 1..3 BAR sizes) so lookups see irregular spacing.
    const cpu = 0x400_0000_0000n + BigInt(i) * 0x80_0000n + BigInt(i % 3) * 0x20_0000n;
    fns.push({
      name,
      parent: { kind: 'host', hostBridge: hosts[d]!.name },
      vendor: 0x1b36,
      device: 0x0010,
      classCode: 0x010802,
      headerType: 0,
      multifunction: true,
      portType: 'rc-integrated-endpoint',
      acs: { state: 'absent' },
      driver: 'nvme',
      bars: [bar(0, 'mem64', cpu, 0x20_0000n, 0n)],
    });
  }
  return buildMachine({
    name: `many-providers-${n}`,
    source: { kind: 'builtin', path: 'testbed' },
    cpu,
    cmdline: '',
    iommu: false,
    hostBridges: hosts,
    functions: fns,
  });
}
