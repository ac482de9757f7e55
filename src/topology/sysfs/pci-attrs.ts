// Parse the text attributes a PCI function shows in sysfs, in the formats drivers/pci/pci-sysfs.c
// prints them: `vendor` "0x%04x", `class` "0x%06x", `numa_node` "%d", `resource` one
// "0x%016llx 0x%016llx 0x%016llx" line (start, end, flags) per resource, link speeds from
// pci_speed_string() ("8.0 GT/s PCIe", "Unknown"; kernels before 4.18 print "8 GT/s").

import { busAddr, bytes, physAddr } from '../../hw/addr.js';
import type { BarKind, PciBar } from '../../hw/pci.js';

/** Resource flags of include/linux/ioport.h that decide a BAR's kind. */
export const IORESOURCE_IO = 0x100;
export const IORESOURCE_MEM = 0x200;
export const IORESOURCE_PREFETCH = 0x2000;
export const IORESOURCE_MEM_64 = 0x100000;

/** Resource index of the expansion ROM (PCI_ROM_RESOURCE); 0..5 are the standard BARs. */
export const PCI_ROM_RESOURCE = 6;

/** "0x8086\n" -> 0x8086; null when the text is not one hex number. */
export function parseHexAttr(text: string | null): number | null {
  const t = text?.trim();
  if (!t || !/^(0x)?[0-9a-fA-F]+$/.test(t)) return null;
  return Number.parseInt(t.replace(/^0x/, ''), 16);
}

/** "-1\n" -> -1; null when the text is not one decimal integer. */
export function parseDecAttr(text: string | null): number | null {
  const t = text?.trim();
  if (!t || !/^-?\d+$/.test(t)) return null;
  return Number.parseInt(t, 10);
}

/** `numa_node`: -1 (NUMA_NO_NODE) and absence both mean unknown. */
export function parseNumaNode(text: string | null): number | null {
  const n = parseDecAttr(text);
  return n === null || n < 0 ? null : n;
}

/** `current_link_speed`/`max_link_speed`: "16.0 GT/s PCIe" -> 16, "2.5 GT/s" -> 2.5, "Unknown" -> null. */
export function parseLinkSpeed(text: string | null): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*GT\/s/.exec(text ?? '');
  return m ? Number(m[1]) : null;
}

/** `current_link_width`/`max_link_width`: "16" -> 16; 0 (link down) and absence -> null. */
export function parseLinkWidth(text: string | null): number | null {
  const n = parseDecAttr(text);
  return n === null || n <= 0 ? null : n;
}

/** How resource_show() prints an unused resource (most lines of every function). */
const EMPTY_RESOURCE = '0x0000000000000000 0x0000000000000000 0x0000000000000000';

/** The kind of a resource from its flags, or null when it is not an I/O or memory BAR. */
function barKind(flags: number): BarKind | null {
  if (flags & IORESOURCE_IO) return 'io';
  if (flags & IORESOURCE_MEM) return flags & IORESOURCE_MEM_64 ? 'mem64' : 'mem32';
  return null;
}

/**
 * Parse `resource` into the BARs (lines 0-5) and the ROM (line 6); later lines (SR-IOV BARs, bridge
 * windows) are not BARs of this function. Empty lines (all zero) are left out.
 *
 * sysfs shows CPU addresses (`pci_resource_to_user()`, the identity on x86 and most architectures);
 * the bus address is not shown, so busStart is set equal to cpuStart.
 * @returns the BARs, or null when a line is malformed.
 */
export function parseResource(text: string): PciBar[] | null {
  const bars: PciBar[] = [];
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  for (const [index, line] of lines.entries()) {
    if (index > PCI_ROM_RESOURCE) break;
    if (line.startsWith(EMPTY_RESOURCE)) continue;
    const f = line.trim().split(/\s+/);
    if (f.length !== 3 || !f.every((x) => /^0x[0-9a-fA-F]+$/.test(x))) return null;
    const [start, end, flags] = f.map((x) => BigInt(x)) as [bigint, bigint, bigint];
    const kind = barKind(Number(flags & 0xffffffffn));
    if (kind === null || (start === 0n && end === 0n) || end < start) continue;
    bars.push({
      index,
      kind,
      prefetchable: (Number(flags & 0xffffffffn) & IORESOURCE_PREFETCH) !== 0,
      cpuStart: physAddr(start),
      busStart: busAddr(start),
      size: bytes(end - start + 1n),
    });
  }
  return bars;
}
