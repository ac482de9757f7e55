// The host-bridge whitelist of drivers/pci/p2pdma.c (`pci_p2pdma_whitelist[]`), per kernel profile.
//
// A path through the host bridge is allowed on a non-Zen CPU only if the host bridge's "root device"
// (see pciHostBridgeDev) matches an entry. Entries with REQ_SAME_HOST_BRIDGE allow traffic only
// between devices below the same host bridge. First match wins.

import type { KernelVersion } from '../profile.js';

export const PCI_VENDOR_ID_INTEL = 0x8086;
export const PCI_VENDOR_ID_GOOGLE = 0x1ae0;
export const PCI_VENDOR_ID_NVIDIA = 0x10de;
export const PCI_VENDOR_ID_ZHAOXIN = 0x1d17;
export const PCI_VENDOR_ID_AMD = 0x1022;
/** `PCI_ANY_ID` (~0): matches every device ID (newest kernels only). */
export const PCI_ANY_ID = -1;
export const REQ_SAME_HOST_BRIDGE = 1 << 0;

export interface WhitelistEntry {
  readonly vendor: number;
  /** Device ID, or PCI_ANY_ID. */
  readonly device: number;
  readonly flags: number;
  /** What the kernel's table comment calls it. */
  readonly what: string;
}

const e = (vendor: number, device: number, flags: number, what: string): WhitelistEntry => ({
  vendor,
  device,
  flags,
  what,
});

/** The ten entries present since the whitelist's introduction and in 6.1. */
const V61: readonly WhitelistEntry[] = [
  e(PCI_VENDOR_ID_INTEL, 0x3c00, REQ_SAME_HOST_BRIDGE, 'Intel Xeon E5/Core i7'),
  e(PCI_VENDOR_ID_INTEL, 0x3c01, REQ_SAME_HOST_BRIDGE, 'Intel Xeon E5/Core i7'),
  e(PCI_VENDOR_ID_INTEL, 0x2f00, REQ_SAME_HOST_BRIDGE, 'Intel Xeon E7 v3/Xeon E5 v3/Core i7'),
  e(PCI_VENDOR_ID_INTEL, 0x2f01, REQ_SAME_HOST_BRIDGE, 'Intel Xeon E7 v3/Xeon E5 v3/Core i7'),
  e(PCI_VENDOR_ID_INTEL, 0x2030, 0, 'Intel Skylake-E'),
  e(PCI_VENDOR_ID_INTEL, 0x2031, 0, 'Intel Skylake-E'),
  e(PCI_VENDOR_ID_INTEL, 0x2032, 0, 'Intel Skylake-E'),
  e(PCI_VENDOR_ID_INTEL, 0x2033, 0, 'Intel Skylake-E'),
  e(PCI_VENDOR_ID_INTEL, 0x2020, 0, 'Intel Skylake-E'),
  e(PCI_VENDOR_ID_INTEL, 0x09a2, 0, 'Intel 3rd Gen Xeon Scalable (Ice Lake)'),
];

/** Entries added after 6.1 (Intel accelerators, Google SoCs, NVIDIA Grace). */
const NEWER: readonly WhitelistEntry[] = [
  e(PCI_VENDOR_ID_INTEL, 0x0b25, 0, 'Intel DSA (Sapphire Rapids)'),
  e(PCI_VENDOR_ID_INTEL, 0x0cfe, 0, 'Intel IAX (Sapphire Rapids)'),
  e(PCI_VENDOR_ID_INTEL, 0x11fb, 0, 'Intel DSA (Granite Rapids-D)'),
  e(PCI_VENDOR_ID_INTEL, 0x1212, 0, 'Intel DSA (Diamond Rapids)'),
  e(PCI_VENDOR_ID_INTEL, 0x1216, 0, 'Intel IAA (Diamond Rapids)'),
  e(PCI_VENDOR_ID_INTEL, 0x4940, 0, 'Intel QAT 4xxx'),
  e(PCI_VENDOR_ID_INTEL, 0x4942, 0, 'Intel QAT 401xx'),
  e(PCI_VENDOR_ID_INTEL, 0x4944, 0, 'Intel QAT 402xx'),
  e(PCI_VENDOR_ID_INTEL, 0x4946, 0, 'Intel QAT 420xx'),
  e(PCI_VENDOR_ID_INTEL, 0x4948, 0, 'Intel QAT 6xxx'),
  e(PCI_VENDOR_ID_GOOGLE, PCI_ANY_ID, 0, 'Google SoCs'),
  e(PCI_VENDOR_ID_NVIDIA, 0x2f95, 0, 'NVIDIA Grace'),
  e(PCI_VENDOR_ID_NVIDIA, 0x2f96, 0, 'NVIDIA Grace'),
  e(PCI_VENDOR_ID_NVIDIA, 0x2f97, 0, 'NVIDIA Grace'),
  e(PCI_VENDOR_ID_NVIDIA, 0x2f98, 0, 'NVIDIA Grace'),
];

const WHITELISTS: Readonly<Record<KernelVersion, readonly WhitelistEntry[]>> = {
  '6.1': V61,
  newest: [...V61, ...NEWER],
};

/** The whitelist a kernel profile carries. */
export const p2pdmaWhitelist = (version: KernelVersion): readonly WhitelistEntry[] => WHITELISTS[version];

/** First entry matching vendor:device, as the kernel's table scan finds it. */
export function whitelistLookup(
  version: KernelVersion,
  vendor: number,
  device: number,
): WhitelistEntry | undefined {
  return p2pdmaWhitelist(version).find(
    (w) => w.vendor === vendor && (w.device === device || w.device === PCI_ANY_ID),
  );
}

/** The oldest profile whose whitelist admits this host bridge, for "which kernel whitelists it" advice. */
export function firstVersionWhitelisting(vendor: number, device: number): 'all' | 'newest' | null {
  if (whitelistLookup('6.1', vendor, device)) return 'all';
  if (whitelistLookup('newest', vendor, device)) return 'newest';
  return null;
}
