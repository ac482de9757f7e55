// Decode a function's configuration space, byte-exactly, into the fields of the machine model.
//
// The walk follows what the kernel does at enumeration: the standard capability list from 0x34
// (PCI_CAP_ID_EXP gives the port type and link), then the extended list from 0x100 (ACS, SR-IOV).
// Anything that lies past the end of what was readable is reported unknown; a malformed list (a loop,
// a pointer into the header) is a ConfigError naming the offset.

import type { AcsInfo, PcieLink, SriovInfo, Unknown } from './pci.js';
import {
  LINK_SPEED_GTS,
  PCI_ACS_CAP,
  PCI_ACS_CTRL,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_SSVID,
  PCI_CAPABILITY_LIST,
  PCI_CFG_SPACE_SIZE,
  PCI_EXP_FLAGS,
  PCI_EXP_FLAGS_TYPE,
  PCI_EXP_LNKCAP,
  PCI_EXP_LNKSTA,
  PCI_EXT_CAP_ID_ACS,
  PCI_EXT_CAP_ID_SRIOV,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MASK,
  PCI_HEADER_TYPE_MFD,
  PCI_SECONDARY_BUS,
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
  PCIE_PORT_TYPES,
  type PciePortType,
} from './pci-regs.js';

export class ConfigError extends Error {}

export interface DecodedConfig {
  readonly vendor: number;
  readonly device: number;
  readonly revision: number;
  readonly classCode: number;
  readonly headerType: number;
  readonly multifunction: boolean;
  readonly subsystemVendor: number | null;
  readonly subsystemDevice: number | null;
  readonly secondaryBus: number | null;
  readonly subordinateBus: number | null;
  readonly portType: PciePortType | 'none' | Unknown;
  readonly link: PcieLink | null;
  readonly acs: AcsInfo;
  readonly sriov: SriovInfo | null | Unknown;
}

const rd8 = (c: Uint8Array, o: number): number => c[o]!;
const rd16 = (c: Uint8Array, o: number): number => c[o]! | (c[o + 1]! << 8);
const rd32 = (c: Uint8Array, o: number): number => (rd16(c, o) | (rd16(c, o + 2) << 16)) >>> 0;

const unknown = (reason: string): Unknown => ({ state: 'unknown', reason });

/** Walk the standard capability list; returns cap id -> offset, or null when it runs past `c`. */
function standardCaps(c: Uint8Array): Map<number, number> | null {
  const caps = new Map<number, number>();
  if (!(rd16(c, PCI_STATUS) & PCI_STATUS_CAP_LIST)) return caps;
  let pos = rd8(c, PCI_CAPABILITY_LIST) & ~3;
  // The kernel bounds the walk at 48 entries (PCI_FIND_CAP_TTL); a longer chain is a loop.
  for (let ttl = 48; pos >= 0x40 && ttl > 0; ttl--) {
    if (pos + 2 > c.length) return null;
    const id = rd8(c, pos);
    if (id === 0xff) break;
    if (!caps.has(id)) caps.set(id, pos);
    pos = rd8(c, pos + 1) & ~3;
  }
  return caps;
}

/** Walk the extended capability list from 0x100. */
function extendedCaps(c: Uint8Array): Map<number, number> {
  const caps = new Map<number, number>();
  let pos = PCI_CFG_SPACE_SIZE;
  // (4096 - 256) / 8 entries at most, the kernel's bound for the extended walk.
  for (let ttl = (4096 - 256) / 8; pos >= PCI_CFG_SPACE_SIZE && ttl > 0; ttl--) {
    if (pos + 4 > c.length) break;
    const hdr = rd32(c, pos);
    if (hdr === 0 || hdr === 0xffffffff) break;
    const id = hdr & 0xffff;
    if (!caps.has(id)) caps.set(id, pos);
    pos = (hdr >>> 20) & 0xffc;
  }
  return caps;
}

function decodeLink(c: Uint8Array, exp: number): PcieLink | null {
  if (exp + PCI_EXP_LNKSTA + 2 > c.length) return null;
  const cap = rd32(c, exp + PCI_EXP_LNKCAP);
  const sta = rd16(c, exp + PCI_EXP_LNKSTA);
  const width = (sta >> 4) & 0x3f;
  const maxWidth = (cap >> 4) & 0x3f;
  return {
    speedGts: LINK_SPEED_GTS[sta & 0xf] ?? null,
    width: width || null,
    maxSpeedGts: LINK_SPEED_GTS[cap & 0xf] ?? null,
    maxWidth: maxWidth || null,
  };
}

export interface DecodeOptions {
  /**
   * The function is an SR-IOV virtual function: its Vendor ID and Device ID registers read 0xffff by
   * definition (the PF's SR-IOV capability holds the VF device ID), so 0xffff is not "no device".
   */
  readonly virtfn?: boolean | undefined;
}

/**
 * Decode raw config bytes (64, 256 or 4096 of them, as sysfs `config` gives).
 * @throws ConfigError when fewer than 64 bytes are given or the vendor ID is 0xffff (no device) on a
 *   function that is not a virtual function.
 */
export function decodeConfig(c: Uint8Array, opts: DecodeOptions = {}): DecodedConfig {
  if (c.length < 64) throw new ConfigError(`config space is ${c.length} bytes; at least 64 are needed`);
  const vendor = rd16(c, 0);
  if (vendor === 0xffff && !opts.virtfn)
    throw new ConfigError('config space reads vendor 0xffff (no device responds)');
  const ht = rd8(c, PCI_HEADER_TYPE);
  const headerType = ht & PCI_HEADER_TYPE_MASK;
  const isBridge = headerType === 1 || headerType === 2;
  const base = {
    vendor,
    device: rd16(c, 2),
    revision: rd8(c, 8),
    classCode: rd8(c, 9) | (rd8(c, 10) << 8) | (rd8(c, 11) << 16),
    headerType,
    multifunction: (ht & PCI_HEADER_TYPE_MFD) !== 0,
    subsystemVendor: headerType === 0 ? rd16(c, PCI_SUBSYSTEM_VENDOR_ID) : null,
    subsystemDevice: headerType === 0 ? rd16(c, PCI_SUBSYSTEM_ID) : null,
    secondaryBus: isBridge ? rd8(c, PCI_SECONDARY_BUS) : null,
    subordinateBus: isBridge ? rd8(c, PCI_SUBORDINATE_BUS) : null,
  };
  const caps = standardCaps(c);
  if (caps === null) {
    const why = `config space is ${c.length} bytes: capabilities are not visible (read it as root)`;
    return { ...base, portType: unknown(why), link: null, acs: unknown(why), sriov: unknown(why) };
  }
  let subsystem = {};
  const ssvid = caps.get(PCI_CAP_ID_SSVID);
  if (isBridge && ssvid !== undefined && ssvid + 8 <= c.length) {
    subsystem = { subsystemVendor: rd16(c, ssvid + 4), subsystemDevice: rd16(c, ssvid + 6) };
  }
  const exp = caps.get(PCI_CAP_ID_EXP);
  if (exp === undefined) {
    // Conventional PCI: no PCIe capability, no extended config space, so no ACS or SR-IOV.
    return { ...base, ...subsystem, portType: 'none', link: null, acs: { state: 'absent' }, sriov: null };
  }
  const typeCode = (rd16(c, exp + PCI_EXP_FLAGS) & PCI_EXP_FLAGS_TYPE) >> 4;
  const portType = PCIE_PORT_TYPES[typeCode] ?? unknown(`reserved PCIe port type ${typeCode}`);
  const link = decodeLink(c, exp);
  if (c.length <= PCI_CFG_SPACE_SIZE) {
    const why = `config space is ${c.length} bytes: extended capabilities (ACS, SR-IOV) are not visible`;
    return { ...base, ...subsystem, portType, link, acs: unknown(why), sriov: unknown(why) };
  }
  const ext = extendedCaps(c);
  const acsPos = ext.get(PCI_EXT_CAP_ID_ACS);
  const acs: AcsInfo =
    acsPos === undefined
      ? { state: 'absent' }
      : {
          state: 'present',
          capOffset: acsPos,
          cap: rd16(c, acsPos + PCI_ACS_CAP),
          ctrl: rd16(c, acsPos + PCI_ACS_CTRL),
        };
  const sv = ext.get(PCI_EXT_CAP_ID_SRIOV);
  const sriov: SriovInfo | null =
    sv === undefined
      ? null
      : {
          totalVfs: rd16(c, sv + PCI_SRIOV_TOTAL_VF),
          numVfs: rd16(c, sv + PCI_SRIOV_NUM_VF),
          vfOffset: rd16(c, sv + PCI_SRIOV_VF_OFFSET),
          vfStride: rd16(c, sv + PCI_SRIOV_VF_STRIDE),
          vfDevice: rd16(c, sv + PCI_SRIOV_VF_DID),
        };
  return { ...base, ...subsystem, portType, link, acs, sriov };
}
