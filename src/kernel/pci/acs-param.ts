// The boot parameters that decide ACS programming: the kernel command line as kernel/params.c splits
// it, the `pci=` options of drivers/pci/pci.c pci_setup() (and arch/x86/pci/common.c
// pcibios_setup()), the IOMMU switches that make an IOMMU driver call pci_request_acs()
// (drivers/iommu/intel/dmar.c detect_intel_iommu(), drivers/iommu/amd/init.c amd_iommu_detect()), and
// the subset of the kernel's vsscanf() (lib/vsprintf.c) that pci_dev_str_match() relies on.

import type { LogLevel } from '../printk.js';
import type { KernelVersion } from '../profile.js';

export interface BootLogLine {
  readonly level: LogLevel;
  /** As dmesg shows it, without the timestamp. */
  readonly text: string;
}

const isSpace = (c: string | undefined): boolean => c !== undefined && ' \t\n\v\f\r'.includes(c);
const hexVal = (c: string | undefined): number =>
  c === undefined ? -1 : '0123456789abcdef'.indexOf(c.toLowerCase());

export interface ScanResult {
  /** sscanf()'s return: the number of conversions stored (%n does not count). */
  readonly num: number;
  /** Stored values in format order: numbers for %x/%hx/%n, one-character strings for %c. */
  readonly vals: readonly (number | string)[];
}

/**
 * The kernel's vsscanf() for the conversions %x, %hx, %c and %n: whitespace in the format matches any
 * run of whitespace, other format characters must match exactly, %x skips leading whitespace and an
 * optional 0x, and stores the value truncated to 32 bits (16 for %hx).
 * @returns what vsscanf() returns and stores; never fails.
 */
export function kernelSscanf(buf: string, fmt: string): ScanResult {
  const vals: (number | string)[] = [];
  let num = 0;
  let s = 0;
  let f = 0;
  while (f < fmt.length) {
    if (isSpace(fmt[f])) {
      while (isSpace(fmt[f])) f++;
      while (isSpace(buf[s])) s++;
    }
    if (f < fmt.length && fmt[f] !== '%') {
      if (fmt[f++] !== buf[s++]) break;
      continue;
    }
    if (f >= fmt.length) break;
    f++;
    const half = fmt[f] === 'h';
    if (half) f++;
    const conv = fmt[f++];
    if (conv === 'n') {
      vals.push(s);
      continue;
    }
    if (s >= buf.length) break;
    if (conv === 'c') {
      vals.push(buf[s++]!);
      num++;
      continue;
    }
    if (conv !== 'x') throw new Error(`kernelSscanf: unsupported conversion %${conv}`);
    while (isSpace(buf[s])) s++;
    if (hexVal(buf[s]) < 0) break;
    // simple_strntoull(): an "0x" prefix is skipped even when no digit follows it.
    if (buf[s] === '0' && buf[s + 1]?.toLowerCase() === 'x') s += 2;
    let v = 0;
    for (; hexVal(buf[s]) >= 0; s++) v = (Math.imul(v, 16) + hexVal(buf[s])) >>> 0;
    vals.push(half ? v & 0xffff : v);
    num++;
  }
  return { num, vals };
}

export interface KernelParam {
  readonly name: string;
  /** The text after the first '=', quotes removed; null for a bare flag. */
  readonly value: string | null;
}

/**
 * Split a kernel command line the way next_arg() does: whitespace separates, double quotes group, a
 * value may be quoted, and `--` ends the kernel's parameters (the rest goes to init).
 * @returns the parameters in order; never fails.
 */
export function parseKernelCmdline(cmdline: string): KernelParam[] {
  const out: KernelParam[] = [];
  let i = 0;
  while (i < cmdline.length) {
    while (isSpace(cmdline[i])) i++;
    if (i >= cmdline.length) break;
    let inQuote = false;
    let eq = -1;
    let j = i;
    for (; j < cmdline.length; j++) {
      const c = cmdline[j]!;
      if (isSpace(c) && !inQuote) break;
      if (eq < 0 && c === '=') eq = j;
      if (c === '"') inQuote = !inQuote;
    }
    const strip = (t: string): string => t.replace(/^"/, '').replace(/"$/, '');
    const name = strip(cmdline.slice(i, eq < 0 ? j : eq));
    const value = eq < 0 ? null : strip(cmdline.slice(eq + 1, j));
    i = j;
    if (name === '--' && value === null) break;
    out.push({ name, value });
  }
  return out;
}

/** Options x86's pcibios_setup() consumes before pci_setup() sees them (exact, or prefix when '='). */
const X86_PCI_OPTIONS = [
  'off',
  'bfsort',
  'nobfsort',
  'bios',
  'nobios',
  'biosirq',
  'pirqaddr=',
  'conf1',
  'conf2',
  'nommconf',
  'check_enable_amd_mmconf',
  'noacpi',
  'noearly',
  'usepirqmask',
  'irqmask=',
  'lastbus=',
  'rom',
  'norom',
  'nobar',
  'assign-busses',
  'use_crs',
  'nocrs',
  'earlydump',
  'routeirq',
  'skip_isa_align',
  'noioapicquirk',
  'ioapicreroute',
  'noioapicreroute',
  'big_root_window',
];
/** pci_setup() options that do not concern ACS: compared exactly (strcmp) ... */
const PCI_EXACT_OPTIONS = ['nomsi', 'noaer', 'earlydump', 'nodomains'];
/** ... and by prefix (strncmp). */
const PCI_PREFIX_OPTIONS = [
  'realloc',
  'noari',
  'cbiosize=',
  'cbmemsize=',
  'resource_alignment=',
  'ecrc=',
  'hpiosize=',
  'hpmmiosize=',
  'hpmmioprefsize=',
  'hpmemsize=',
  'hpbussize=',
  'pcie_bus_tune_off',
  'pcie_bus_safe',
  'pcie_bus_perf',
  'pcie_bus_peer2peer',
  'pcie_scan_all',
];
const known = (opt: string, version: KernelVersion): boolean =>
  X86_PCI_OPTIONS.some((k) => (k.endsWith('=') ? opt.startsWith(k) : opt === k)) ||
  PCI_EXACT_OPTIONS.includes(opt) ||
  PCI_PREFIX_OPTIONS.some((k) => opt.startsWith(k)) ||
  (version !== '6.1' && opt.startsWith('notph'));

export interface PciSetup {
  /** `pci=noats`: pci_ats_disabled() is true, so ACS Translation Blocking is turned on too. */
  readonly noats: boolean;
  readonly disableAcsRedir: string | null;
  /** `pci=config_acs=` (newest only; 6.1 does not know the option). */
  readonly configAcs: string | null;
  /** What pci_setup() printed while parsing ("PCIe: ATS is disabled", "PCI: Unknown option `x'"). */
  readonly log: readonly BootLogLine[];
}

/**
 * pci_setup() over every `pci=` parameter: each value is split at ',' (so a ','-separated device list
 * inside disable_acs_redir= is cut there: the rest becomes unknown options); a later
 * disable_acs_redir= replaces an earlier one.
 * @returns the ACS-relevant settings; never fails.
 */
export function pciSetupOptions(cmdline: string, version: KernelVersion): PciSetup {
  let noats = false;
  let disableAcsRedir: string | null = null;
  let configAcs: string | null = null;
  const log: BootLogLine[] = [];
  for (const p of parseKernelCmdline(cmdline)) {
    if (p.name !== 'pci' || p.value === null) continue;
    for (const opt of p.value.split(',')) {
      if (opt === '' || known(opt, version)) continue;
      if (opt.startsWith('noats')) {
        log.push({ level: 'info', text: 'PCIe: ATS is disabled' });
        noats = true;
      } else if (opt.startsWith('disable_acs_redir=')) disableAcsRedir = opt.slice(18);
      else if (version !== '6.1' && opt.startsWith('config_acs=')) configAcs = opt.slice(11);
      else log.push({ level: 'err', text: `PCI: Unknown option \`${opt}'` });
    }
  }
  return { noats, disableAcsRedir, configAcs, log };
}

/** What the firmware tells the kernel about the IOMMU (its ACPI table), and how the kernel was built. */
export interface IommuPlatform {
  /** 'intel': a DMAR table (VT-d), 'amd': an IVRS table (AMD-Vi), 'none': no table (absent, or off in the BIOS). */
  readonly vendor: 'intel' | 'amd' | 'none';
  /** DMAR_PLATFORM_OPT_IN: the firmware asks for DMA protection; requests ACS even with intel_iommu=off. */
  readonly platformOptIn?: boolean | undefined;
  /** CONFIG_INTEL_IOMMU_DEFAULT_ON; true for Debian's kernels (DMAR on without a parameter). */
  readonly intelDefaultOn?: boolean | undefined;
}

interface IommuSwitches {
  readonly noIommu: boolean;
  readonly passthrough: boolean;
  readonly dmarDisabled: boolean;
  readonly noPlatformOptin: boolean;
  readonly amdDisabled: boolean;
  readonly intremapOff: boolean;
}

const TRUE_WORDS = ['1', 'y', 'Y', 'on'];

function iommuSwitches(iommu: IommuPlatform, cmdline: string | null): IommuSwitches {
  const s = {
    noIommu: false,
    passthrough: false,
    dmarDisabled: !(iommu.intelDefaultOn ?? true),
    noPlatformOptin: false,
    amdDisabled: false,
    intremapOff: false,
  };
  for (const p of parseKernelCmdline(cmdline ?? '')) {
    const opts = (p.value ?? '').split(',');
    if (p.name === 'iommu') {
      // arch/x86/kernel/pci-dma.c iommu_setup(): "off" sets no_iommu, "pt" passthrough.
      if (opts.some((o) => o.startsWith('off'))) s.noIommu = true;
      if (opts.some((o) => o.startsWith('pt'))) s.passthrough = true;
      if (opts.some((o) => o.startsWith('nopt'))) s.passthrough = false;
    } else if (p.name === 'iommu.passthrough') {
      s.passthrough = TRUE_WORDS.some((w) => (p.value ?? '').startsWith(w));
    } else if (p.name === 'intel_iommu') {
      for (const o of opts) {
        if (o.startsWith('on')) s.dmarDisabled = false;
        else if (o.startsWith('off')) {
          s.dmarDisabled = true;
          s.noPlatformOptin = true;
        }
      }
    } else if (p.name === 'intremap') {
      // drivers/iommu/irq_remapping.c setup_irqremap(): "off" sets disable_irq_remap.
      if (opts.some((o) => o.startsWith('off'))) s.intremapOff = true;
    } else if (p.name === 'amd_iommu') {
      // parse_amd_iommu_options() tests "off" at every position of the value.
      if ((p.value ?? '').includes('off')) s.amdDisabled = true;
    }
  }
  return s;
}

/**
 * Does an IOMMU driver call pci_request_acs() before the PCI bus is scanned?
 * Intel (detect_intel_iommu): a DMAR table, no `iommu=off`, and DMAR not disabled (default per
 * CONFIG_INTEL_IOMMU_DEFAULT_ON, `intel_iommu=on|off`) unless the platform opts in.
 * AMD (amd_iommu_detect/detect_ivrs): an IVRS table, unless both `iommu=off` and `intremap=off` (the
 * interrupt-remapping setup detects IVRS and requests ACS on its own); `amd_iommu=off` does not stop
 * the request in 6.1 nor in the newest source read (a 2025 patch proposes it).
 * @returns true when ACS is requested; no errno.
 */
export function iommuRequestsAcs(iommu: IommuPlatform, cmdline: string | null): boolean {
  const s = iommuSwitches(iommu, cmdline);
  if (iommu.vendor === 'intel') return !s.noIommu && (!s.dmarDisabled || (iommu.platformOptIn ?? false));
  // AMD: the IOMMU driver's detection requests ACS unless iommu=off, and so does interrupt-remapping
  // setup (amd_iommu_prepare -> IVRS detection), which iommu=off does not stop: only intremap=off does.
  // A real 6.1 boot with `iommu=off` alone leaves ACS RR|CR set on the root ports.
  if (iommu.vendor === 'amd') return !s.noIommu || !s.intremapOff;
  return false;
}

/**
 * Is the IOMMU driver active after boot, and does it translate DMA (not `iommu=pt` passthrough)?
 * @returns both answers; no errno.
 */
export function iommuBootState(
  iommu: IommuPlatform,
  cmdline: string | null,
): { readonly active: boolean; readonly translates: boolean } {
  const s = iommuSwitches(iommu, cmdline);
  let active = false;
  if (iommu.vendor === 'intel') {
    active = !s.noIommu && (!s.dmarDisabled || ((iommu.platformOptIn ?? false) && !s.noPlatformOptin));
  } else if (iommu.vendor === 'amd') {
    active = !s.noIommu && !s.amdDisabled;
  }
  return { active, translates: active && !s.passthrough };
}
