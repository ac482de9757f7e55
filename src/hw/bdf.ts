// PCI addresses: domain:bus:device.function, as the kernel's pci_name() prints them ("%04x:%02x:%02x.%d").

export interface Bdf {
  readonly domain: number;
  readonly bus: number;
  /** devfn = device << 3 | function, as in `struct pci_dev`. */
  readonly devfn: number;
}

const BDF_RE = /^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;
const SHORT_BDF_RE = /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;

/** Parse "dddd:bb:dd.f" (domain 4 to 8 hex digits) or "bb:dd.f" (domain 0). Returns null if malformed. */
export function parseBdf(s: string): Bdf | null {
  const m = BDF_RE.exec(s.trim());
  if (m) {
    const slot = Number.parseInt(m[3]!, 16);
    if (slot > 0x1f) return null;
    return {
      domain: Number.parseInt(m[1]!, 16),
      bus: Number.parseInt(m[2]!, 16),
      devfn: (slot << 3) | Number(m[4]),
    };
  }
  const s2 = SHORT_BDF_RE.exec(s.trim());
  if (s2) {
    const slot = Number.parseInt(s2[2]!, 16);
    if (slot > 0x1f) return null;
    return { domain: 0, bus: Number.parseInt(s2[1]!, 16), devfn: (slot << 3) | Number(s2[3]) };
  }
  return null;
}

const hx = (v: number, w: number): string => v.toString(16).padStart(w, '0');

/** The kernel's pci_name(): "%04x:%02x:%02x.%d". */
export function formatBdf(b: Bdf): string {
  return `${hx(b.domain, 4)}:${hx(b.bus, 2)}:${hx(b.devfn >> 3, 2)}.${b.devfn & 7}`;
}

export const pciSlot = (devfn: number): number => devfn >> 3;
export const pciFunc = (devfn: number): number => devfn & 7;

/** Sort key that orders functions as `lspci` does: domain, bus, devfn. */
export const bdfKey = (b: Bdf): number => b.domain * 0x10000 + b.bus * 0x100 + b.devfn;

/** The p2pdma map-type cache index: (domain << 16) | (bus << 8) | devfn (`map_types_idx`). */
export const mapTypesIdx = (b: Bdf): number => b.domain * 0x10000 + ((b.bus << 8) | b.devfn);
