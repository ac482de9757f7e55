// The PCI world of a machine: functions, bridges, host bridges, and what is known about each.
//
// This is hardware state only: what a reader saw (sysfs, an archive, an XML dump) or what a machine
// file designs. The kernel's decisions about it live in src/kernel. A fact a reader could not see is
// recorded as unknown (with the reason), never guessed: a 64-byte `config` read without root says
// nothing about ACS, and the report must say so.
//
//   host bridge "pci0000:00" (root bus 00)
//     |-- 00:00.0 host-bridge function (first device on the root bus; checked against the whitelist)
//     |-- 00:02.0 root port ---- bus 01 ---- 01:00.0 switch upstream port
//     |                                        |-- bus 02: 02:00.0 downstream port -- bus 03: 03:00.0 NVMe
//     |                                        `-- bus 02: 02:01.0 downstream port -- bus 04: 04:00.0 GPU
//     `-- 00:1f.2 integrated endpoint (on the root bus: no upstream bridge)

import type { BusAddr, Bytes, PhysAddr } from './addr.js';
import type { Bdf } from './bdf.js';
import type { PciePortType } from './pci-regs.js';

/** Something a reader could not see, and why. */
export interface Unknown {
  readonly state: 'unknown';
  readonly reason: string;
}

export type BarKind = 'mem32' | 'mem64' | 'io';

export interface PciBar {
  /** BAR number 0..5, or 6 for the expansion ROM. */
  readonly index: number;
  readonly kind: BarKind;
  readonly prefetchable: boolean;
  /** CPU physical address of the BAR (`pci_resource_start`). */
  readonly cpuStart: PhysAddr;
  /** PCI bus address of the BAR (`pci_bus_address`); differs from cpuStart when the host bridge offsets. */
  readonly busStart: BusAddr;
  readonly size: Bytes;
}

export interface PcieLink {
  /** GT/s, e.g. 16 for Gen4; null when not reported. */
  readonly speedGts: number | null;
  readonly width: number | null;
  readonly maxSpeedGts: number | null;
  readonly maxWidth: number | null;
  /**
   * Link bandwidth in GB/s when a source reports only that (hwloc's `pci_link_speed`: GT/s times width
   * times encoding efficiency, divided by 8), so speed and width cannot be told apart; absent otherwise.
   */
  readonly bandwidthGBps?: number | undefined;
}

/** ACS (Access Control Services) extended capability of one function. */
export type AcsInfo =
  | { readonly state: 'absent' }
  | {
      readonly state: 'present';
      /** Offset of the extended capability in config space (0 for machine files). */
      readonly capOffset: number;
      /** ACS Capability register (which controls the hardware implements). */
      readonly cap: number;
      /** ACS Control register (which controls are on); mutable: the kernel programs it at boot. */
      ctrl: number;
    }
  | Unknown;

export interface SriovInfo {
  readonly totalVfs: number;
  readonly numVfs: number;
  readonly vfOffset: number;
  readonly vfStride: number;
  readonly vfDevice: number;
}

/** A BAR a device uses for a purpose later models need (NVMe CMB, GPU memory aperture). */
export interface BarHint {
  /** BAR number the memory is exposed through. */
  readonly bar: number;
  readonly size: Bytes;
}

/** Device facts a machine file designs that config space does not show. */
export interface DeviceHints {
  /** NVMe Controller Memory Buffer (a candidate P2PDMA provider). */
  readonly cmb?: BarHint | undefined;
  /** GPU or accelerator memory reachable through a BAR (VRAM aperture). */
  readonly vram?: BarHint | undefined;
}

export interface PciFunction {
  /** Canonical name, `pci_name()`: "0000:03:00.0". */
  readonly name: string;
  readonly addr: Bdf;
  readonly vendor: number;
  readonly device: number;
  readonly subsystemVendor: number | null;
  readonly subsystemDevice: number | null;
  /** 24-bit class code: base class << 16 | subclass << 8 | prog-if. */
  readonly classCode: number;
  readonly revision: number | null;
  /** Header type without the multi-function bit: 0 normal, 1 PCI-PCI bridge, 2 CardBus. */
  readonly headerType: number;
  readonly multifunction: boolean;
  readonly bars: readonly PciBar[];
  /** Raw configuration space as read (its length is how much was visible), null when none was given. */
  readonly config: Uint8Array | null;
  /** PCIe capability: port type; 'none' for conventional PCI; unknown when config was not readable. */
  readonly portType: PciePortType | 'none' | Unknown;
  readonly link: PcieLink | null;
  readonly acs: AcsInfo;
  readonly sriov: SriovInfo | null | Unknown;
  /** Bridges: the secondary and subordinate bus numbers. */
  readonly secondaryBus: number | null;
  readonly subordinateBus: number | null;
  /** The bridge whose secondary bus this function sits on (`dev->bus->self`); null on a root bus. */
  bridge: PciFunction | null;
  /** For an SR-IOV virtual function, its physical function. */
  physfn: PciFunction | null;
  /** The host bridge whose hierarchy holds this function. */
  hostBridge: HostBridge;
  /** Functions on this bridge's secondary bus (empty for endpoints). */
  readonly children: PciFunction[];
  readonly numaNode: number | null;
  readonly iommuGroup: number | null;
  /** Bound driver name (`driver` symlink), used as the kernel's dev_warn prefix; null prints "pci". */
  readonly driver: string | null;
  /** Names the OS gave it, e.g. nvme0, mlx5_0, cuda0 (from hwloc/NCCL/udev); for reports only. */
  readonly osNames: readonly string[];
  /** What a machine file says about a device beyond its config space (absent from other sources). */
  readonly hints?: DeviceHints | undefined;
  /** Dense index in `Machine.functions`, assigned by the machine builder. */
  index: number;
}

export interface HostBridge {
  /** sysfs name "pci0000:00" (domain and root bus number). */
  readonly name: string;
  readonly domain: number;
  readonly rootBus: number;
  readonly numaNode: number | null;
  /**
   * Functions on the root bus in the kernel's `bus->devices` list order: devfn order as a boot scan
   * adds them, or registration order when the source shows it (a rescan appends re-added devices).
   */
  readonly rootFunctions: PciFunction[];
  /** Dense index in `Machine.hostBridges`. */
  index: number;
}

export interface CpuInfo {
  /** `vendor_id` of /proc/cpuinfo: "AuthenticAMD", "GenuineIntel", "CentaurHauls", ... */
  readonly vendorId: string;
  /** `cpu family` (decimal in /proc/cpuinfo). */
  readonly family: number;
  readonly model: number;
  readonly modelName: string;
  /** Architecture: "x86_64", "ppc64le", "aarch64", ... */
  readonly arch: string;
  readonly sockets: number | null;
}

export type MachineSourceKind = 'snapshot' | 'live' | 'hwloc-xml' | 'nccl-xml' | 'machine-file' | 'builtin';

export interface Machine {
  readonly name: string;
  readonly source: { readonly kind: MachineSourceKind; readonly path: string };
  readonly cpu: CpuInfo | null;
  /** Kernel command line; null when unknown. */
  readonly cmdline: string | null;
  readonly kernelRelease: string | null;
  /** Whether an IOMMU translates DMA: true/false, or null when the source does not say. */
  readonly iommu: boolean | null;
  readonly numaNodes: number | null;
  readonly hostBridges: readonly HostBridge[];
  /** Every function, sorted by domain, bus, devfn. */
  readonly functions: readonly PciFunction[];
  readonly byName: ReadonlyMap<string, PciFunction>;
  /** What the source did not show (e.g. "config space is 64 bytes: ACS unknown"). */
  readonly notes: readonly string[];
}

/** "vvvv:dddd", the vendor:device ID as lspci -n and the kernel's messages print it. */
export const pciIdText = (f: Pick<PciFunction, 'vendor' | 'device'>): string =>
  `${f.vendor.toString(16).padStart(4, '0')}:${f.device.toString(16).padStart(4, '0')}`;

/** Base class of a 24-bit class code. */
export const baseClass = (f: Pick<PciFunction, 'classCode'>): number => (f.classCode >> 16) & 0xff;

/** Bridge base class (0x06): host, ISA, PCI-PCI bridges and the like. */
export const PCI_BASE_CLASS_BRIDGE = 0x06;

/** An endpoint function as the oracle counts them: header type 0 and base class not 0x06. */
export const isEndpoint = (f: PciFunction): boolean =>
  f.headerType === 0 && baseClass(f) !== PCI_BASE_CLASS_BRIDGE;

export const isBridge = (f: PciFunction): boolean => f.headerType === 1 || f.headerType === 2;

export const isUnknown = (v: unknown): v is Unknown =>
  typeof v === 'object' && v !== null && (v as { state?: unknown }).state === 'unknown';
