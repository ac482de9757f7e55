// Parse /proc/cpuinfo into the CPU facts the P2PDMA model needs. The kernel prints it per architecture:
// arch/x86/kernel/cpu/proc.c show_cpuinfo() ("vendor_id", "cpu family", "model", "model name",
// "physical id"), arch/powerpc/kernel/setup-common.c ("cpu : POWER8E (raw), ...", "revision : ... (pvr
// 004b 0201)"), arch/arm64/kernel/cpuinfo.c ("CPU implementer : 0x41", "CPU part : 0xd0c").
// drivers/pci/p2pdma.c cpu_supports_p2pdma() only asks x86 for vendor and family; other architectures
// are recorded for reports.

import type { CpuInfo } from '../../hw/pci.js';

/** One processor block of /proc/cpuinfo as key -> value. */
type Block = ReadonlyMap<string, string>;

function blocks(text: string): Block[] {
  return text
    .split(/\n\s*\n/)
    .map((b) => {
      const m = new Map<string, string>();
      for (const line of b.split('\n')) {
        const i = line.indexOf(':');
        if (i > 0) m.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
      }
      return m;
    })
    .filter((m) => m.size > 0);
}

const int = (s: string | undefined, radix = 10): number | null => {
  if (s === undefined) return null;
  const t = radix === 16 ? s.replace(/^0x/i, '') : s;
  const ok = radix === 16 ? /^[0-9a-fA-F]+$/.test(t) : /^\d+$/.test(t);
  return ok ? Number.parseInt(t, radix) : null;
};

/** Names of arm64 `CPU implementer` codes (arch/arm64/include/asm/cputype.h ARM_CPU_IMP_*). */
const ARM_IMPLEMENTERS: Readonly<Record<number, string>> = {
  65: 'ARM',
  66: 'Broadcom',
  67: 'Cavium',
  70: 'Fujitsu',
  72: 'HiSilicon',
  78: 'NVIDIA',
  80: 'APM',
  81: 'Qualcomm',
  97: 'Apple',
  109: 'Microsoft',
  192: 'Ampere',
};

function x86(bs: Block[]): CpuInfo | null {
  const b = bs[0]!;
  const family = int(b.get('cpu family'));
  const model = int(b.get('model'));
  const vendorId = b.get('vendor_id');
  if (vendorId === undefined || family === null || model === null) return null;
  const ids = new Set(bs.map((x) => x.get('physical id')).filter((x) => x !== undefined));
  const flags = ` ${b.get('flags') ?? ''} `;
  return {
    vendorId,
    family,
    model,
    modelName: b.get('model name') ?? '',
    arch: flags.includes(' lm ') ? 'x86_64' : 'i686',
    sockets: ids.size > 0 ? ids.size : null,
  };
}

function power(bs: Block[]): CpuInfo | null {
  const b = bs.find((x) => x.has('cpu') && x.has('processor')) ?? bs.find((x) => x.has('cpu'));
  const name = b?.get('cpu');
  if (b === undefined || name === undefined || !/^POWER|^PPC/i.test(name)) return null;
  // The PVR's version and revision halves stand in for family and model.
  const pvr = /pvr\s+([0-9a-f]{4})\s+([0-9a-f]{4})/i.exec(b.get('revision') ?? '');
  return {
    vendorId: 'IBM',
    family: pvr ? Number.parseInt(pvr[1]!, 16) : 0,
    model: pvr ? Number.parseInt(pvr[2]!, 16) : 0,
    modelName: name,
    arch: 'ppc64le',
    sockets: null,
  };
}

function arm64(bs: Block[]): CpuInfo | null {
  const b = bs.find((x) => x.has('CPU implementer'));
  const imp = int(b?.get('CPU implementer'), 16);
  if (b === undefined || imp === null) return null;
  const part = int(b.get('CPU part'), 16) ?? 0;
  const vendorId = ARM_IMPLEMENTERS[imp] ?? `0x${imp.toString(16)}`;
  return {
    vendorId,
    family: int(b.get('CPU architecture')) ?? 8,
    model: part,
    modelName: b.get('model name') ?? `${vendorId} part 0x${part.toString(16).padStart(3, '0')}`,
    arch: 'aarch64',
    sockets: null,
  };
}

/**
 * Read the boot CPU's identity from the text of /proc/cpuinfo.
 * @returns the CPU, or null with a note saying why when the format is not one of x86, POWER or arm64.
 */
export function parseProcCpuinfo(text: string): { cpu: CpuInfo | null; note: string | null } {
  const bs = blocks(text);
  if (bs.length === 0) return { cpu: null, note: 'proc/cpuinfo is empty: the CPU is unknown' };
  const cpu = bs[0]!.has('vendor_id') ? x86(bs) : (power(bs) ?? arm64(bs));
  if (cpu !== null) return { cpu, note: null };
  return {
    cpu: null,
    note: 'proc/cpuinfo is in a format dmasim does not read (not x86, POWER or arm64): the CPU is unknown',
  };
}
