// Short names for what a PCI function is, from its class code, for reports and filters.

import type { PciFunction } from '../hw/pci.js';

export type DeviceKind =
  | 'gpu'
  | 'nvme'
  | 'nic'
  | 'ib'
  | 'storage'
  | 'accel'
  | 'bridge'
  | 'usb'
  | 'smbus'
  | 'iommu'
  | 'other';

/** Classify by the 24-bit class code (PCI Code and ID Assignment spec). */
export function deviceKind(f: Pick<PciFunction, 'classCode' | 'headerType'>): DeviceKind {
  const base = (f.classCode >> 16) & 0xff;
  const sub = (f.classCode >> 8) & 0xff;
  if (base === 0x06 || f.headerType === 1) return 'bridge';
  if (base === 0x03) return 'gpu';
  if (base === 0x12) return 'accel';
  if (base === 0x0b && sub === 0x40) return 'accel';
  if (base === 0x01 && sub === 0x08) return 'nvme';
  if (base === 0x01) return 'storage';
  if (base === 0x02 && sub === 0x07) return 'ib';
  if (base === 0x0c && sub === 0x06) return 'ib';
  if (base === 0x02) return 'nic';
  if (base === 0x0c && sub === 0x03) return 'usb';
  if (base === 0x0c && sub === 0x05) return 'smbus';
  if (base === 0x08 && sub === 0x06) return 'iommu';
  return 'other';
}

export const DEVICE_KINDS: readonly DeviceKind[] = [
  'gpu',
  'nvme',
  'nic',
  'ib',
  'storage',
  'accel',
  'bridge',
  'usb',
  'smbus',
  'iommu',
  'other',
];

const SHORT: Record<DeviceKind, string> = {
  gpu: 'gpu',
  nvme: 'nvm',
  nic: 'nic',
  ib: 'ib',
  storage: 'sto',
  accel: 'acc',
  bridge: 'br',
  usb: 'usb',
  smbus: 'smb',
  iommu: 'iom',
  other: 'oth',
};

/** Aliases like gpu0, gpu1, nvm0 in machine order, for compact matrices. */
export function aliases(fns: readonly PciFunction[]): Map<PciFunction, string> {
  const counts = new Map<string, number>();
  const out = new Map<PciFunction, string>();
  for (const f of fns) {
    const k = deviceKind(f);
    const n = counts.get(k) ?? 0;
    counts.set(k, n + 1);
    out.set(f, `${SHORT[k]}${n}`);
  }
  return out;
}

/**
 * A filter from a comma-separated list of kinds (gpu, nvme, nic, ...) and/or BDF prefixes
 * ("0000:03", "3b:00.0"). Returns null for an empty spec; throws an Error naming an unknown word.
 */
export function parseDeviceFilter(spec: string | undefined): ((f: PciFunction) => boolean) | null {
  if (!spec) return null;
  const words = spec
    .split(',')
    .map((w) => w.trim().toLowerCase())
    .filter(Boolean);
  const kinds = new Set<string>();
  const prefixes: string[] = [];
  for (const w of words) {
    if ((DEVICE_KINDS as readonly string[]).includes(w)) kinds.add(w);
    else if (/^[0-9a-f:.]+$/.test(w)) prefixes.push(w);
    else
      throw new Error(
        `unknown filter word "${w}": use device kinds (${DEVICE_KINDS.join(', ')}) or PCI addresses`,
      );
  }
  return (f) =>
    kinds.has(deviceKind(f)) || prefixes.some((p) => f.name.startsWith(p) || f.name.slice(5).startsWith(p));
}
