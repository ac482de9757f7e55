// The kernel log: printk lines with their virtual timestamps, and the dev_* prefixes Linux prints.

import type { PciFunction } from '../hw/pci.js';

export type LogLevel = 'err' | 'warn' | 'info' | 'debug';

export interface LogLine {
  readonly timeNs: number;
  readonly level: LogLevel;
  /** The line exactly as dmesg shows it, without the timestamp. */
  readonly text: string;
}

export interface KernelLog {
  readonly lines: LogLine[];
  printk(level: LogLevel, text: string): void;
  /** `dev_warn()` / `pci_warn()`: "<driver or 'pci'> <BDF>: text". */
  devWarn(f: PciFunction, text: string): void;
  devInfo(f: PciFunction, text: string): void;
  devErr(f: PciFunction, text: string): void;
  /** Lines since a mark, for tests and per-call capture. */
  since(mark: number): LogLine[];
}

export const devName = (f: Pick<PciFunction, 'driver' | 'name'>): string => `${f.driver ?? 'pci'} ${f.name}`;

/** A kernel log whose timestamps come from `now()` (the engine's virtual clock). */
export function createKernelLog(now: () => number = () => 0, echo?: (l: LogLine) => void): KernelLog {
  const lines: LogLine[] = [];
  const printk = (level: LogLevel, text: string): void => {
    const l = { timeNs: now(), level, text };
    lines.push(l);
    echo?.(l);
  };
  return {
    lines,
    printk,
    devWarn: (f, t) => printk('warn', `${devName(f)}: ${t}`),
    devInfo: (f, t) => printk('info', `${devName(f)}: ${t}`),
    devErr: (f, t) => printk('err', `${devName(f)}: ${t}`),
    since: (mark) => lines.slice(mark),
  };
}
