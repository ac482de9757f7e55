// Leaf values of machine files: vendor:device IDs, byte sizes, addresses, ACS bit lists, class names,
// link generations. Each parser returns the value or a sentence saying what is wrong, so the schema
// can attach the sentence to the exact YAML node.

import { ACS_BIT, ACS_BIT_NAMES, type AcsBitName } from '../../hw/pci-regs.js';

export { ACS_BIT, ACS_BIT_NAMES, type AcsBitName };

export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly why: string };
const good = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = (why: string): Parsed<never> => ({ ok: false, why });

const show = (v: unknown): string => (typeof v === 'string' ? `"${v}"` : (JSON.stringify(v) ?? String(v)));

/** A "vvvv:dddd" pair of 16-bit hex numbers (vendor:device, subvendor:subdevice). */
export interface IdPair {
  readonly vendor: number;
  readonly device: number;
}

export function parseIdPair(v: unknown): Parsed<IdPair> {
  if (typeof v === 'string') {
    const m = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$/.exec(v.trim());
    if (m) return good({ vendor: Number.parseInt(m[1]!, 16), device: Number.parseInt(m[2]!, 16) });
  }
  return bad(`${show(v)} is not a vendor:device ID pair (write 4 hex digits each, e.g. "8086:2030")`);
}

const UNITS: Readonly<Record<string, bigint>> = {
  '': 1n,
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
};

/** A byte size: a number, "0x4000", or a number with a binary unit: "16K", "256M", "32GiB", "1T". */
export function parseSize(v: unknown): Parsed<bigint> {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return good(BigInt(v));
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^0x[0-9a-f]+$/i.test(s)) return good(BigInt(s));
    const m = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(s);
    if (m) return good(BigInt(m[1]!) * UNITS[m[2]!.toUpperCase()]!);
  }
  return bad(`${show(v)} is not a size (write e.g. 16384, "16K", "256M", "32G")`);
}

/** An address: a number up to 2^53, or a hex string for anything larger. */
export function parseAddress(v: unknown): Parsed<bigint> {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return good(BigInt(v));
    return bad(`${v} is not exact as a YAML number; quote large addresses as hex, e.g. "0x38000000000"`);
  }
  if (typeof v === 'string' && /^0x[0-9a-f]{1,16}$/i.test(v.trim())) return good(BigInt(v.trim()));
  return bad(`${show(v)} is not an address (write a number or a hex string such as "0xc0000000")`);
}

/** One ACS bit name; the caller reports the item's own position. */
export function parseAcsBit(v: unknown): Parsed<number> {
  const name = typeof v === 'string' ? v.trim().toUpperCase() : '';
  if ((ACS_BIT_NAMES as readonly string[]).includes(name)) return good(ACS_BIT[name as AcsBitName]);
  return bad(`unknown ACS bit ${show(v)} (expected ${ACS_BIT_NAMES.join(', ')})`);
}

/** ACS bits as names, "SV RR CR UF" style, for messages. */
export const acsBitList = (mask: number): string =>
  ACS_BIT_NAMES.filter((n) => mask & ACS_BIT[n]).join(', ') || 'none';

/** Class names a machine file may use instead of a 24-bit class code. */
export const CLASS_NAMES: Readonly<Record<string, number>> = {
  gpu: 0x030200, // 3D controller: data-centre GPUs
  vga: 0x030000, // VGA compatible: desktop graphics cards
  display: 0x038000,
  nvme: 0x010802,
  ahci: 0x010601,
  raid: 0x010400,
  sas: 0x010700,
  nic: 0x020000,
  ethernet: 0x020000,
  ib: 0x020700,
  infiniband: 0x020700,
  accel: 0x120000, // processing accelerator
  dma: 0x088000, // system peripheral (DMA engines such as Intel CBDMA)
  iommu: 0x080600,
  audio: 0x040300,
  usb: 0x0c0330,
  smbus: 0x0c0500,
  'host-bridge': 0x060000,
  'isa-bridge': 0x060100,
  other: 0xff0000,
};

export function parseClass(v: unknown): Parsed<number> {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffff) return good(v);
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s in CLASS_NAMES) return good(CLASS_NAMES[s]!);
    if (/^0x[0-9a-f]{1,6}$/.test(s)) return good(Number.parseInt(s, 16));
  }
  return bad(
    `${show(v)} is not a class: give a 24-bit class code (e.g. 0x010802) or one of ${Object.keys(CLASS_NAMES).join(', ')}`,
  );
}

/** PCIe generation -> GT/s. */
export const GEN_GTS: Readonly<Record<number, number>> = { 1: 2.5, 2: 5, 3: 8, 4: 16, 5: 32, 6: 64 };
export const LINK_WIDTHS = [1, 2, 4, 8, 12, 16, 32] as const;
