// Boot-time ACS programming of drivers/pci/pci.c: what Linux writes into each function's ACS Control
// register while it enumerates the PCI bus, and the kernel log lines it prints doing so.
//
//   IOMMU driver detects its ACPI table ──> pci_request_acs()   (intel: detect_intel_iommu(),
//                                             |                   amd: detect_ivrs())
//   for every function, in scan order:        v
//     pci_acs_init() -> pci_enable_acs():  [ACS requested?] pci_std_enable_acs(): ctrl |= cap & SV|RR|CR|UF
//                                                           (+ TB for pci=noats / external-facing)
//                                          then the command line, always:
//                                            6.1:    pci=disable_acs_redir=  clears RR|CR|EC
//                                            newest: pci=disable_acs_redir= and pci=config_acs=
//
// Devices are named on the command line in pci_dev_str_match()'s two forms:
// `[<domain>:]<bus>:<dev>.<fn>[/<dev>.<fn>]*` (a path of devfns from a root-bus device) and
// `pci:<vendor>:<device>[:<subvendor>:<subdevice>]` (0 matches any). The parsing here follows the
// kernel's own sscanf() rules, so a string this parser accepts is one the kernel accepts.

import type { Machine, PciFunction } from '../../hw/pci.js';
import { setAcsCtrl } from '../../hw/pci-config-encode.js';
import {
  PCI_ACS_CR,
  PCI_ACS_DT,
  PCI_ACS_EC,
  PCI_ACS_RR,
  PCI_ACS_SV,
  PCI_ACS_TB,
  PCI_ACS_UF,
} from '../../hw/pci-regs.js';
import { err, type KResult, ok } from '../errno.js';
import type { LogLevel } from '../printk.js';
import { DEFAULT_KERNEL, type KernelVersion } from '../profile.js';
import { type BootLogLine, kernelSscanf, pciSetupOptions } from './acs-param.js';

export {
  type BootLogLine,
  type IommuPlatform,
  iommuBootState,
  iommuRequestsAcs,
  parseKernelCmdline,
} from './acs-param.js';

/** The bits `pci=disable_acs_redir=` clears (P2P request/completion redirect, egress control). */
const ACS_REDIR_BITS = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC;
const ACS_ALL_BITS = PCI_ACS_SV | PCI_ACS_TB | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF | PCI_ACS_EC | PCI_ACS_DT;

/** Where a parsed device string stopped (`*endptr`), and whether it named this function. */
export interface StrMatch {
  readonly matched: boolean;
  /** Index in the parameter string just past what was consumed. */
  readonly end: number;
}

/** PCI_DEVFN(slot, func): the kernel masks both, so slot 0x23 means slot 3. */
const pciDevfn = (slot: number, func: number): number => ((slot & 0x1f) << 3) | (func & 0x07);

/**
 * pci_dev_str_match_path(): does `[<domain>:]<bus>:<dev>.<fn>[/<dev>.<fn>]*` (up to the next ';') name
 * `f`? The path is checked from its end: the last devfn against `f`, the one before against its
 * upstream bridge, and so on; what remains names the device on the root bus.
 * @returns ok({matched, end}) with `end` at the next ';' or the end; err EINVAL when malformed.
 */
export function pciDevStrMatchPath(f: PciFunction, s: string, start = 0): KResult<StrMatch> {
  const semi = s.indexOf(';', start);
  const end = semi < 0 ? s.length : semi;
  let wpath = s.slice(start, end);
  let dev: PciFunction | null = f;
  for (;;) {
    const slash = wpath.lastIndexOf('/');
    if (slash < 0) break;
    const r = kernelSscanf(wpath.slice(slash), '/%x.%x%c');
    if (r.num !== 2) return err('EINVAL', `"${wpath.slice(slash)}" is not /<device>.<function>`);
    if (dev.addr.devfn !== pciDevfn(r.vals[0] as number, r.vals[1] as number))
      return ok({ matched: false, end });
    dev = pciUpstreamBridge(dev);
    if (!dev) return ok({ matched: false, end });
    wpath = wpath.slice(0, slash);
  }
  let seg = 0;
  let r = kernelSscanf(wpath, '%x:%x:%x.%x%c');
  let v: number[];
  if (r.num === 4) {
    v = r.vals as number[];
    seg = v[0]!;
    v = v.slice(1);
  } else {
    r = kernelSscanf(wpath, '%x:%x.%x%c');
    if (r.num !== 3) return err('EINVAL', `"${wpath}" is not [<domain>:]<bus>:<device>.<function>`);
    v = r.vals as number[];
  }
  const matched =
    seg === dev.addr.domain && v[0] === dev.addr.bus && dev.addr.devfn === pciDevfn(v[1]!, v[2]!);
  return ok({ matched, end });
}

/** pci_upstream_bridge(): the bridge above (a VF uses its PF's); null on a root bus. */
const pciUpstreamBridge = (f: PciFunction): PciFunction | null => (f.physfn ?? f).bridge;

/**
 * pci_dev_str_match(): does the device string starting at `start` name `f`?
 * @returns ok({matched, end}); err EINVAL when the string cannot be parsed.
 */
export function pciDevStrMatch(f: PciFunction, s: string, start = 0): KResult<StrMatch> {
  if (!s.startsWith('pci:', start)) return pciDevStrMatchPath(f, s, start);
  const p = start + 4;
  const rest = s.slice(p);
  let r = kernelSscanf(rest, '%hx:%hx:%hx:%hx%n');
  let ids: number[];
  let count: number;
  if (r.num === 4) {
    ids = r.vals.slice(0, 4) as number[];
    count = r.vals[4] as number;
  } else {
    r = kernelSscanf(rest, '%hx:%hx%n');
    if (r.num !== 2) return err('EINVAL', `"pci:${rest}" is not pci:<vendor>:<device>`);
    ids = [r.vals[0] as number, r.vals[1] as number, 0, 0];
    count = r.vals[2] as number;
  }
  const want = [f.vendor, f.device, f.subsystemVendor ?? 0, f.subsystemDevice ?? 0];
  const matched = ids.every((id, i) => id === 0 || id === want[i]);
  return ok({ matched, end: p + count });
}

/** The outcome of walking a `;`/`,`-separated device list for one function. */
export type ParamMatch = 'match' | 'no-match' | 'parse-error';

/**
 * The device-list walk of pci_disable_acs_redir() (6.1): entries separated by ';' or ','; the walk
 * stops at the first match, at a parse error, or at anything else after an entry. Note that a BDF
 * path runs to the next ';', so after a BDF only ';' separates (`a,b` is a parse error).
 * @returns whether `param` names `f`.
 */
export function acsParamMatches(f: PciFunction, param: string): ParamMatch {
  let p = 0;
  while (p < param.length) {
    const r = pciDevStrMatch(f, param, p);
    if (!r.ok) return 'parse-error';
    if (r.value.matched) return 'match';
    p = r.value.end;
    if (param[p] !== ';' && param[p] !== ',') break;
    p++;
  }
  return 'no-match';
}

/** The functions of `machine` a `pci=disable_acs_redir=` list names (for checking printed fixes). */
export const acsParamMatchedFunctions = (machine: Machine, param: string): PciFunction[] =>
  machine.functions.filter((f) => acsParamMatches(f, param) === 'match');

export interface PciEnableAcsOptions {
  /** Whether an IOMMU driver called pci_request_acs() (see iommuRequestsAcs). */
  readonly acsRequested: boolean;
  /** Kernel command line (pci=disable_acs_redir=, pci=config_acs=, pci=noats). */
  readonly cmdline: string | null;
  /** Kernel profile; default DEFAULT_KERNEL. */
  readonly version?: KernelVersion | undefined;
  /** Names of external-facing ports (ACPI ExternalFacingPort); they and all below get TB. */
  readonly externalFacing?: ReadonlySet<string> | undefined;
}

interface BootState {
  readonly opts: PciEnableAcsOptions;
  readonly version: KernelVersion;
  readonly log: BootLogLine[];
  readonly once: Set<string>;
  readonly noats: boolean;
  readonly disableAcsRedir: string | null;
  readonly configAcs: string | null;
}

const pciLog = (st: BootState, level: LogLevel, f: PciFunction, text: string): void => {
  // At enumeration no driver is bound yet, so dev_printk() prefixes every line with "pci".
  st.log.push({ level, text: `pci ${f.name}: ${text}` });
};
const printOnce = (st: BootState, level: LogLevel, text: string): void => {
  if (st.once.has(text)) return;
  st.once.add(text);
  st.log.push({ level, text });
};

/** dev->external_facing or dev->untrusted (a function below an external-facing port). */
function externalOrUntrusted(f: PciFunction, ext: ReadonlySet<string> | undefined): boolean {
  if (!ext || ext.size === 0) return false;
  for (let d: PciFunction | null = f; d; d = pciUpstreamBridge(d)) if (ext.has(d.name)) return true;
  return false;
}

/** pci_std_enable_acs(): the kernel's defaults, masked by what the capability implements. */
function pciStdEnableAcs(st: BootState, f: PciFunction, cap: number, ctrl: number): number {
  let c = ctrl | (cap & (PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF));
  if (st.noats || externalOrUntrusted(f, st.opts.externalFacing)) c |= cap & PCI_ACS_TB;
  return c;
}

/** 6.1 pci_disable_acs_redir(): clear RR|CR|EC on the functions the parameter names. */
function pciDisableAcsRedir61(st: BootState, f: PciFunction, ctrl: number | null): number | null {
  const param = st.disableAcsRedir;
  if (param === null) return ctrl;
  const m = acsParamMatches(f, param);
  if (m === 'parse-error') printOnce(st, 'info', `PCI: Can't parse disable_acs_redir parameter: ${param}`);
  if (m !== 'match') return ctrl;
  if (ctrl === null) {
    pciLog(
      st,
      'warn',
      f,
      'cannot disable ACS redirect for this hardware as it does not have ACS capabilities',
    );
    return null;
  }
  pciLog(st, 'info', f, 'disabled ACS redirect');
  return ctrl & ~ACS_REDIR_BITS;
}

/** Parse a config_acs flags string ("xx1x0", bit 0 last) into mask and flags; null when invalid. */
function parseAcsFlags(s: string): { mask: number; flags: number } | null {
  let mask = 0;
  let flags = 0;
  for (let i = s.length - 1, shift = 0; i >= 0; i--, shift++) {
    const ch = s[i]!;
    if (ch === '0' || ch === '1') mask |= 1 << shift;
    if (ch === '1') flags |= 1 << shift;
    else if (ch !== '0' && ch !== 'x' && ch !== 'X') return null;
  }
  return { mask, flags };
}

/**
 * Newest __pci_config_acs(): walk `param`; for disable_acs_redir the mask is fixed (RR|CR|EC, set to
 * 0), for config_acs each entry carries `<flags>@`. On a match, bits in the mask take the flags and the
 * others the firmware value (`fw`): the kernel defaults set just before are dropped.
 */
function pciConfigAcsNewest(
  st: BootState,
  f: PciFunction,
  param: string | null,
  fixedMask: number,
  ctrl: number,
  fw: number,
): number {
  if (param === null) return ctrl;
  let mask = fixedMask;
  let flags = fixedMask === 0 ? 0 : ~fixedMask & 0xffff;
  let p = 0;
  let matched = false;
  while (p < param.length) {
    if (fixedMask === 0) {
      const at = param.indexOf('@', p);
      const parsed = at < 0 ? null : parseAcsFlags(param.slice(p, at));
      if (!parsed) {
        pciLog(st, 'err', f, at < 0 ? 'ACS Flags missing' : 'Invalid ACS flags... Ignoring');
        return ctrl;
      }
      ({ mask, flags } = parsed);
      p = at + 1;
    }
    if (mask & ~ACS_ALL_BITS) {
      pciLog(st, 'err', f, 'Invalid ACS flags specified');
      return ctrl;
    }
    const r = pciDevStrMatch(f, param, p);
    if (!r.ok) {
      printOnce(st, 'warn', "PCI: Can't parse ACS command line parameter");
      break;
    }
    if (r.value.matched) {
      matched = true;
      break;
    }
    p = r.value.end;
    if (param[p] !== ';' && param[p] !== ',') break;
    p++;
  }
  if (!matched) return ctrl;
  const c = (fw & ~mask) | (flags & mask);
  pciLog(st, 'info', f, `Configured ACS to 0x${c.toString(16).padStart(4, '0')}`);
  return c;
}

/**
 * pci_write_config_word(pos + PCI_ACS_CTRL): the register keeps only the controls the capability
 * implements (the others are hardwired to 0), in the model and in the config bytes.
 */
function writeCtrl(f: PciFunction, ctrl: number): void {
  if (f.acs.state !== 'present') throw new Error(`${f.name}: writing ACS control without a capability`);
  const hw = ctrl & f.acs.cap;
  f.acs.ctrl = hw;
  if (f.config && f.config.length > 256) setAcsCtrl(f.config, hw);
}

/** pci_enable_acs() for one function, per profile. */
function pciEnableAcsOne(st: BootState, f: PciFunction): void {
  const acs = f.acs;
  if (acs.state === 'unknown') return;
  const present = acs.state === 'present';
  const fw = present ? acs.ctrl : null;
  let ctrl = fw;
  // Device-specific ACS quirks (pci_dev_specific_enable_acs) are not modelled: every function takes
  // the standard path.
  if (st.opts.acsRequested && present) ctrl = pciStdEnableAcs(st, f, acs.cap, acs.ctrl);
  if (st.version === '6.1') {
    ctrl = pciDisableAcsRedir61(st, f, ctrl);
  } else if (present) {
    ctrl = pciConfigAcsNewest(st, f, st.disableAcsRedir, ACS_REDIR_BITS, ctrl!, fw!);
    ctrl = pciConfigAcsNewest(st, f, st.configAcs, 0, ctrl, fw!);
  }
  if (present && ctrl !== null) writeCtrl(f, ctrl);
}

/**
 * Program every function's ACS Control register as Linux does at enumeration (pci_acs_init() ->
 * pci_enable_acs()), in scan order, and return the kernel log lines printed meanwhile.
 * Mutates `acs.ctrl` and the config bytes of the functions it changes. Functions whose ACS state is
 * unknown are left alone.
 * @returns the boot log lines (pci= option complaints first, then per-device lines); no errno.
 */
export function pciEnableAcs(machine: Machine, opts: PciEnableAcsOptions): BootLogLine[] {
  const version = opts.version ?? DEFAULT_KERNEL;
  const pci = pciSetupOptions(opts.cmdline ?? '', version);
  const log: BootLogLine[] = [...pci.log];
  const st: BootState = {
    opts,
    version,
    log,
    once: new Set(),
    noats: pci.noats,
    disableAcsRedir: pci.disableAcsRedir,
    configAcs: pci.configAcs,
  };
  for (const f of machine.functions) pciEnableAcsOne(st, f);
  return log;
}
