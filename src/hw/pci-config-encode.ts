// Encode the fields of the machine model into a function's configuration space, byte-exactly: the
// inverse of pci-config.ts, used by machine files and generated machines so that every function
// carries the config bytes a real device would show in sysfs.
//
// The layout follows what real PCIe devices present (include/uapi/linux/pci_regs.h offsets):
//
//   0x00  type 0/1 header: IDs, command/status (CAP_LIST), class, header type, BARs, bus numbers,
//         bridge windows, subsystem (type 0), capability pointer 0x34 -> 0x40
//   0x40  Power Management  -> 0x50 MSI -> 0x70 PCI Express (PCIe functions only)
//         -> 0xb0 MSI-X (endpoints) or Subsystem ID (bridges with a subsystem)
//   0x100 AER -> 0x148 ACS (if present) -> 0x160 SR-IOV (if present)      (4096-byte PCIe space)
//
// Conventional PCI functions (portType 'none') get 256 bytes and no extended space, as sysfs shows.

import type { BusAddr, Bytes } from './addr.js';
import type { BarKind, PcieLink, SriovInfo } from './pci.js';
import { ConfigError } from './pci-config.js';
import {
  LINK_SPEED_GTS,
  PCI_ACS_CTRL,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_MSI,
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_PM,
  PCI_CAP_ID_SSVID,
  PCI_CAPABILITY_LIST,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_EXT_CAP_ID_ACS,
  PCI_EXT_CAP_ID_SRIOV,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MFD,
  PCI_PRIMARY_BUS,
  PCI_SECONDARY_BUS,
  PCI_SRIOV_CTRL,
  PCI_SRIOV_INITIAL_VF,
  PCI_SRIOV_NUM_VF,
  PCI_SRIOV_TOTAL_VF,
  PCI_SRIOV_VF_DID,
  PCI_SRIOV_VF_OFFSET,
  PCI_SRIOV_VF_STRIDE,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_SUBORDINATE_BUS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  type PciePortType,
  portTypeCode,
} from './pci-regs.js';

/** Where the encoder puts each capability (fixed, like one real device family would). */
export const CAP_OFFSET = { pm: 0x40, msi: 0x50, exp: 0x70, tail: 0xb0 } as const;
export const EXT_CAP_OFFSET = { aer: 0x100, acs: 0x148, sriov: 0x160 } as const;

/** One memory BAR as it is programmed: the bus address goes into the register. */
export interface EncodedBar {
  /** BAR number 0..5 (0..1 on a bridge). A 64-bit BAR also takes index + 1. */
  readonly index: number;
  readonly kind: Exclude<BarKind, 'io'>;
  readonly prefetchable: boolean;
  readonly busStart: BusAddr;
  readonly size: Bytes;
}

/** A bridge window in bus addresses, inclusive limit; null when the window is closed. */
export interface BridgeWindow {
  readonly base: bigint;
  readonly limit: bigint;
}

/** The fields encodeConfig writes; decodeConfig gives the same values back. */
export interface ConfigFields {
  readonly vendor: number;
  readonly device: number;
  readonly revision: number;
  readonly classCode: number;
  /** 0 (normal) or 1 (PCI-PCI bridge); CardBus is not encoded. */
  readonly headerType: number;
  readonly multifunction: boolean;
  /** Type 0: always numbers. Type 1: numbers put a Subsystem ID capability in, null leaves it out. */
  readonly subsystemVendor: number | null;
  readonly subsystemDevice: number | null;
  readonly primaryBus?: number | undefined;
  readonly secondaryBus: number | null;
  readonly subordinateBus: number | null;
  readonly portType: PciePortType | 'none';
  /** Link capability and status; null writes zeros (no link). */
  readonly link: PcieLink | null;
  readonly acs:
    | { readonly state: 'absent' }
    | { readonly state: 'present'; readonly cap: number; readonly ctrl: number; readonly capOffset?: number };
  readonly sriov: SriovInfo | null;
  readonly bars?: readonly EncodedBar[] | undefined;
  readonly memWindow?: BridgeWindow | null | undefined;
  readonly prefWindow?: BridgeWindow | null | undefined;
}

const wr8 = (c: Uint8Array, o: number, v: number): void => {
  c[o] = v & 0xff;
};
const wr16 = (c: Uint8Array, o: number, v: number): void => {
  wr8(c, o, v);
  wr8(c, o + 1, v >>> 8);
};
const wr32 = (c: Uint8Array, o: number, v: number): void => {
  wr16(c, o, v & 0xffff);
  wr16(c, o + 2, (v >>> 16) & 0xffff);
};
const rd16 = (c: Uint8Array, o: number): number => c[o]! | (c[o + 1]! << 8);
const rd32 = (c: Uint8Array, o: number): number => (rd16(c, o) | (rd16(c, o + 2) << 16)) >>> 0;

const speedCode = (gts: number | null): number => {
  if (gts === null) return 0;
  for (const [k, v] of Object.entries(LINK_SPEED_GTS)) if (v === gts) return Number(k);
  throw new ConfigError(`link speed ${gts} GT/s has no PCIe speed code`);
};

function writeHeader(c: Uint8Array, f: ConfigFields): void {
  wr16(c, 0x00, f.vendor);
  wr16(c, 0x02, f.device);
  // Memory space and bus master enabled, as firmware leaves a configured device.
  wr16(c, 0x04, 0x0006);
  wr16(c, PCI_STATUS, PCI_STATUS_CAP_LIST);
  wr8(c, 0x08, f.revision);
  wr8(c, 0x09, f.classCode);
  wr8(c, 0x0a, f.classCode >>> 8);
  wr8(c, 0x0b, f.classCode >>> 16);
  wr8(c, PCI_HEADER_TYPE, f.headerType | (f.multifunction ? PCI_HEADER_TYPE_MFD : 0));
  wr8(c, PCI_CAPABILITY_LIST, CAP_OFFSET.pm);
  if (f.headerType === 0) {
    wr16(c, PCI_SUBSYSTEM_VENDOR_ID, f.subsystemVendor ?? 0);
    wr16(c, PCI_SUBSYSTEM_ID, f.subsystemDevice ?? 0);
  } else {
    wr8(c, PCI_PRIMARY_BUS, f.primaryBus ?? 0);
    wr8(c, PCI_SECONDARY_BUS, f.secondaryBus ?? 0);
    wr8(c, PCI_SUBORDINATE_BUS, f.subordinateBus ?? 0);
    writeWindows(c, f.memWindow ?? null, f.prefWindow ?? null);
  }
  for (const b of f.bars ?? []) writeBar(c, f.headerType, b);
}

/** Memory base/limit (0x20/0x22, 32-bit, 1 MiB granules) and prefetchable (0x24..0x2f, 64-bit). */
function writeWindows(c: Uint8Array, mem: BridgeWindow | null, pref: BridgeWindow | null): void {
  // A closed window reads base > limit, as the kernel's pci_read_bridge_mmio() expects.
  const m = mem ?? { base: 0xfff00000n, limit: 0xfffffn };
  wr16(c, 0x20, Number((m.base >> 16n) & 0xfff0n));
  wr16(c, 0x22, Number((m.limit >> 16n) & 0xfff0n));
  const p = pref ?? { base: 0xfff00000n, limit: 0xfffffn };
  wr16(c, 0x24, Number((p.base >> 16n) & 0xfff0n) | 1);
  wr16(c, 0x26, Number((p.limit >> 16n) & 0xfff0n) | 1);
  wr32(c, 0x28, Number((p.base >> 32n) & 0xffffffffn));
  wr32(c, 0x2c, Number((p.limit >> 32n) & 0xffffffffn));
}

function writeBar(c: Uint8Array, headerType: number, b: EncodedBar): void {
  const slots = headerType === 0 ? 6 : 2;
  const width = b.kind === 'mem64' ? 2 : 1;
  if (b.index < 0 || b.index + width > slots) {
    throw new ConfigError(`BAR ${b.index} (${b.kind}) does not fit a type ${headerType} header`);
  }
  const off = 0x10 + 4 * b.index;
  const flags = (b.kind === 'mem64' ? 0x4 : 0) | (b.prefetchable ? 0x8 : 0);
  wr32(c, off, (Number(b.busStart & 0xfffffff0n) | flags) >>> 0);
  if (b.kind === 'mem64') wr32(c, off + 4, Number((b.busStart >> 32n) & 0xffffffffn));
}

/** PM -> MSI -> [PCIe] -> [MSI-X on PCIe endpoints, or Subsystem ID on bridges that have one]. */
function writeStandardCaps(c: Uint8Array, f: ConfigFields): void {
  const pcie = f.portType !== 'none';
  const ssvid = f.headerType === 1 && f.subsystemVendor !== null;
  const msix = f.headerType === 0 && pcie;
  const tail = ssvid || msix ? CAP_OFFSET.tail : 0;
  wr8(c, CAP_OFFSET.pm, PCI_CAP_ID_PM);
  wr8(c, CAP_OFFSET.pm + 1, CAP_OFFSET.msi);
  wr16(c, CAP_OFFSET.pm + 2, 0x0003); // PM spec 1.2
  wr8(c, CAP_OFFSET.msi, PCI_CAP_ID_MSI);
  wr8(c, CAP_OFFSET.msi + 1, pcie ? CAP_OFFSET.exp : tail);
  wr16(c, CAP_OFFSET.msi + 2, 0x0080); // 64-bit address capable
  if (pcie) writePcieCap(c, f, tail);
  if (ssvid) {
    wr8(c, CAP_OFFSET.tail, PCI_CAP_ID_SSVID);
    wr16(c, CAP_OFFSET.tail + 4, f.subsystemVendor ?? 0);
    wr16(c, CAP_OFFSET.tail + 6, f.subsystemDevice ?? 0);
  } else if (msix) {
    wr8(c, CAP_OFFSET.tail, PCI_CAP_ID_MSIX);
    wr16(c, CAP_OFFSET.tail + 2, 0x001f); // 32 vectors, table in BAR 0
  }
}

function writePcieCap(c: Uint8Array, f: ConfigFields, next: number): void {
  const e = CAP_OFFSET.exp;
  const type = portTypeCode(f.portType as PciePortType);
  const downstream = f.portType === 'root-port' || f.portType === 'downstream-port';
  wr8(c, e, PCI_CAP_ID_EXP);
  wr8(c, e + 1, next);
  wr16(c, e + 0x02, 0x0002 | (type << 4) | (downstream ? 0x0100 : 0));
  wr32(c, e + 0x04, 0x00008001); // MPS 256 B, role-based error reporting
  wr16(c, e + 0x08, 0x2010); // MPS 128 B, MRRS 512 B, relaxed ordering
  const l = f.link;
  const maxCode = speedCode(l?.maxSpeedGts ?? null);
  const port = downstream ? 0x00100000 : 0; // data link layer link active reporting
  wr32(c, e + 0x0c, (maxCode | ((l?.maxWidth ?? 0) << 4) | 0x0c00 | port) >>> 0);
  const up = downstream && (l?.width ?? 0) > 0 ? 0x2000 : 0;
  wr16(c, e + 0x12, speedCode(l?.speedGts ?? null) | ((l?.width ?? 0) << 4) | up);
  if (maxCode > 0) {
    wr32(c, e + 0x2c, ((1 << maxCode) - 1) << 1); // supported link speeds vector
    wr16(c, e + 0x30, maxCode); // target link speed
  }
}

function extHeader(c: Uint8Array, pos: number, id: number, version: number, next: number): void {
  wr32(c, pos, (id | (version << 16) | (next << 20)) >>> 0);
}

/** AER -> [ACS] -> [SR-IOV] in extended config space. */
function writeExtendedCaps(c: Uint8Array, f: ConfigFields): void {
  const chain: { pos: number; write: (next: number) => void }[] = [
    { pos: EXT_CAP_OFFSET.aer, write: (n) => extHeader(c, EXT_CAP_OFFSET.aer, 0x0001, 2, n) },
  ];
  const acs = f.acs;
  if (acs.state === 'present') {
    const pos = EXT_CAP_OFFSET.acs;
    chain.push({
      pos,
      write: (n) => {
        extHeader(c, pos, PCI_EXT_CAP_ID_ACS, 1, n);
        wr16(c, pos + 4, acs.cap);
        wr16(c, pos + PCI_ACS_CTRL, acs.ctrl);
      },
    });
  }
  const sv = f.sriov;
  if (sv) {
    const pos = EXT_CAP_OFFSET.sriov;
    chain.push({
      pos,
      write: (n) => {
        extHeader(c, pos, PCI_EXT_CAP_ID_SRIOV, 1, n);
        wr16(c, pos + PCI_SRIOV_CTRL, sv.numVfs > 0 ? 0x0001 : 0); // VF Enable
        wr16(c, pos + PCI_SRIOV_INITIAL_VF, sv.totalVfs);
        wr16(c, pos + PCI_SRIOV_TOTAL_VF, sv.totalVfs);
        wr16(c, pos + PCI_SRIOV_NUM_VF, sv.numVfs);
        wr16(c, pos + PCI_SRIOV_VF_OFFSET, sv.vfOffset);
        wr16(c, pos + PCI_SRIOV_VF_STRIDE, sv.vfStride);
        wr16(c, pos + PCI_SRIOV_VF_DID, sv.vfDevice);
      },
    });
  }
  for (const [i, cap] of chain.entries()) cap.write(chain[i + 1]?.pos ?? 0);
}

/**
 * Encode a function's configuration space: 4096 bytes for a PCIe function, 256 for conventional PCI.
 * @returns the config bytes; decodeConfig() of them gives the same fields back.
 * @throws ConfigError for fields no real config space can hold (a CardBus header, ACS or SR-IOV on a
 *   conventional function, a BAR that does not fit the header, an unknown link speed).
 */
export function encodeConfig(f: ConfigFields): Uint8Array {
  if (f.headerType !== 0 && f.headerType !== 1) {
    throw new ConfigError(`header type ${f.headerType} cannot be encoded (only 0 and 1)`);
  }
  const pcie = f.portType !== 'none';
  if (!pcie && (f.acs.state === 'present' || f.sriov)) {
    throw new ConfigError('a conventional PCI function has no extended config space for ACS or SR-IOV');
  }
  const c = new Uint8Array(pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE);
  writeHeader(c, f);
  writeStandardCaps(c, f);
  if (pcie) writeExtendedCaps(c, f);
  return c;
}

/** Find the ACS extended capability by walking the list from 0x100; null when there is none. */
export function findAcsCap(c: Uint8Array): number | null {
  let pos = PCI_CFG_SPACE_SIZE;
  for (let ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl > 0; ttl--) {
    if (pos < PCI_CFG_SPACE_SIZE || pos + 8 > c.length) return null;
    const hdr = rd32(c, pos);
    if (hdr === 0 || hdr === 0xffffffff) return null;
    if ((hdr & 0xffff) === PCI_EXT_CAP_ID_ACS) return pos;
    pos = (hdr >>> 20) & 0xffc;
  }
  return null;
}

/**
 * Patch the ACS Control register in config bytes, as pci_write_config_word(pos + PCI_ACS_CTRL) does.
 * @throws ConfigError when the bytes hold no ACS capability (a caller bug: check acs.state first).
 */
export function setAcsCtrl(config: Uint8Array, ctrl: number): void {
  const pos = findAcsCap(config);
  if (pos === null) throw new ConfigError('config space has no ACS capability to write');
  wr16(config, pos + PCI_ACS_CTRL, ctrl);
}
