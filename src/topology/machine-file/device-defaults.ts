// What a machine file means by `acs: default` and by leaving `driver` out: the ACS capability real
// ports of a vendor advertise (as lspci -vvv shows in "ACSCap"), and the Linux driver that binds to a
// kind of device (its name prefixes the kernel's dev_warn lines, e.g. "nvme 0000:03:00.0: ...").

import type { Role } from './nodes.js';
import type { IdPair } from './values.js';

const SV_TB_RR_CR_UF = 0x001f;
const SV_TB_RR_CR_UF_DT = 0x005f;
const ALL_SEVEN = 0x007f;

/** ACS capability by vendor, for root ports and switch downstream ports. */
const ROOT_PORT_ACS: Readonly<Record<number, number>> = {
  32902: SV_TB_RR_CR_UF, // Intel: Xeon (Skylake-SP 8086:2030-2033) and client root ports
  4130: SV_TB_RR_CR_UF_DT, // AMD Zen GPP bridges (1022:1483)
  6966: SV_TB_RR_CR_UF_DT, // QEMU pcie-root-port (oracle: cap 0x005f)
};
const DOWNSTREAM_PORT_ACS: Readonly<Record<number, number>> = {
  4277: ALL_SEVEN, // PLX / Broadcom PEX8xxx, PEX9xxx (e.g. 10b5:9797)
  4096: ALL_SEVEN, // Broadcom PEX88xxx / PEX89xxx (e.g. 1000:c030)
  4600: SV_TB_RR_CR_UF_DT, // Microchip Switchtec
};

/**
 * The capability `acs: default` stands for: what real ports of this kind advertise. Upstream ports,
 * bridges and endpoints have no ACS capability by default (write it out when a device has one).
 * @returns the ACS Capability register value, or null for none.
 */
export function defaultAcsCap(id: IdPair, role: Role): number | null {
  if (role === 'root-port') return ROOT_PORT_ACS[id.vendor] ?? SV_TB_RR_CR_UF;
  if (role === 'downstream-port') return (DOWNSTREAM_PORT_ACS[id.vendor] ?? SV_TB_RR_CR_UF_DT) || null;
  return null;
}

/**
 * The driver Linux binds to a function of this kind, or null when none would (host bridges, PCI
 * bridges, devices without a well-known driver).
 */
export function defaultDriver(id: IdPair, classCode: number, role: Role): string | null {
  if (role === 'root-port' || role === 'upstream-port' || role === 'downstream-port') return 'pcieport';
  if (role !== 'endpoint') return null;
  const cls = classCode >> 8;
  const base = classCode >> 16;
  if (cls === 0x0108) return 'nvme';
  if (cls === 0x0106) return 'ahci';
  if (base === 0x03)
    return ({ 4318: 'nvidia', 4098: 'amdgpu', 32902: 'i915' } as Record<number, string>)[id.vendor] ?? null;
  if (base === 0x02) {
    if (id.vendor === 0x15b3) return 'mlx5_core';
    if (id.vendor === 0x14e4) return 'bnxt_en';
    if (id.vendor === 0x8086 && (id.device === 0x15f3 || id.device === 0x125c)) return 'igc';
    return null;
  }
  if (cls === 0x0880 && id.vendor === 0x8086) return 'ioatdma';
  return null;
}
