// The P2P report as text: machine header, the PCI tree with ACS marks, the endpoint matrix (map type
// and distance, like `nvidia-smi topo -m` but for every device), and the findings with their fixes.
// Pure: receives the analysis, returns a string.

import pc from 'picocolors';
import { aliases, deviceKind } from '../analysis/device-class.js';
import type { P2pAnalysis } from '../analysis/p2p-analysis.js';
import { MAP_BUS_ADDR, MAP_NOT_SUPPORTED, MAP_THRU_HOST_BRIDGE } from '../analysis/p2p-matrix.js';
import type { PairResult } from '../analysis/p2p-pairs.js';
import { type HostBridge, type Machine, type PciFunction, pciIdText } from '../hw/pci.js';
import { acsBitNames, PCI_ACS_CR, PCI_ACS_EC, PCI_ACS_RR } from '../hw/pci-regs.js';

type Colors = ReturnType<typeof pc.createColors>;

export interface TextOptions {
  readonly color: boolean;
  /** Largest endpoint count for which the matrix is printed (0: always). */
  readonly maxMatrix?: number;
  /** Pair class function (PIX/PXB/PHB/NODE/SYS), when available. */
  readonly topoClass?: ((a: PciFunction, b: PciFunction) => string) | undefined;
}

function acsMark(f: PciFunction, c: Colors): string {
  if (f.acs.state === 'absent') return '';
  if (f.acs.state === 'unknown') return c.dim(' ACS ?');
  const redir = f.acs.ctrl & (PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC);
  const text = ` ACS ctrl ${acsBitNames(f.acs.ctrl)}`;
  return redir ? c.yellow(`${text} (redirect)`) : c.dim(text);
}

function portLabel(f: PciFunction): string {
  if (typeof f.portType === 'string' && f.portType !== 'none' && f.portType !== 'endpoint') return f.portType;
  if (f.headerType === 1) return 'bridge';
  return deviceKind(f);
}

function fnLine(f: PciFunction, c: Colors): string {
  const names = f.osNames.length ? ` ${f.osNames.join(',')}` : '';
  const drv = f.driver ? c.dim(` [${f.driver}]`) : '';
  return `${c.bold(f.name)} ${portLabel(f)} ${pciIdText(f)}${names}${drv}${acsMark(f, c)}`;
}

/** The PCI tree, one host bridge at a time, like `lspci -tv` with ACS state. */
export function renderTree(m: Machine, c: Colors): string {
  const lines: string[] = [];
  const walk = (f: PciFunction, prefix: string, last: boolean): void => {
    lines.push(`${prefix}${last ? '└─ ' : '├─ '}${fnLine(f, c)}`);
    const kids = f.children;
    kids.forEach((k, i) => {
      walk(k, prefix + (last ? '   ' : '│  '), i === kids.length - 1);
    });
  };
  for (const h of m.hostBridges) {
    lines.push(`${c.cyan(h.name)}${h.numaNode !== null && h.numaNode >= 0 ? ` (NUMA ${h.numaNode})` : ''}`);
    h.rootFunctions.forEach((f, i) => {
      walk(f, '', i === h.rootFunctions.length - 1);
    });
  }
  return lines.join('\n');
}

function cell(r: PairResult): string {
  if (r.provider === r.client) return 'X';
  if (r.mapType === 'bus-addr') return `B${r.distance}`;
  if (r.mapType === 'thru-host-bridge') return `H${r.distance}`;
  return '--';
}

/** The endpoint matrix: rows are providers, columns clients. */
export function renderMatrix(
  a: P2pAnalysis,
  c: Colors,
  cls?: (x: PciFunction, y: PciFunction) => string,
): string {
  const eps = a.endpoints;
  const n = eps.length;
  const al = aliases(eps);
  const w = Math.max(4, ...eps.map((f) => al.get(f)!.length)) + 1;
  const head = ' '.repeat(14 + w) + eps.map((f) => al.get(f)!.padStart(w)).join('');
  const rows = [head];
  for (let i = 0; i < n; i++) {
    const p = eps[i]!;
    let line = `${p.name.padEnd(14)}${al.get(p)!.padEnd(w)}`;
    for (let j = 0; j < n; j++) {
      const r = a.pair(i, j);
      const t = (cls ? cls(p, r.client) : cell(r)).padStart(w);
      line +=
        r.mapType === 'bus-addr' ? c.green(t) : r.mapType === 'thru-host-bridge' ? c.yellow(t) : c.red(t);
    }
    rows.push(line);
  }
  return rows.join('\n');
}

function hostBridgeNote(h: HostBridge): string {
  const first = h.rootFunctions[0];
  return first ? `${h.name}: first device ${first.name} (${pciIdText(first)})` : `${h.name}: empty root bus`;
}

/** The whole text report. */
export function renderP2pText(a: P2pAnalysis, opts: TextOptions): string {
  const c = pc.createColors(opts.color);
  const m = a.machine;
  const out: string[] = [];
  const cpu = m.cpu
    ? `${m.cpu.vendorId} family 0x${m.cpu.family.toString(16)} model 0x${m.cpu.model.toString(16)} (${m.cpu.modelName || m.cpu.arch})`
    : 'unknown';
  out.push(c.bold(`dmasim p2p: ${m.name}`));
  out.push(`source:   ${m.source.kind} ${m.source.path}`);
  out.push(
    `kernel:   Linux ${a.version} model${m.kernelRelease ? ` (the machine runs ${m.kernelRelease})` : ''}`,
  );
  out.push(`cpu:      ${cpu}`);
  out.push(
    `iommu:    ${m.iommu === null ? 'unknown' : m.iommu ? 'on' : 'off'}    cmdline: ${m.cmdline ?? 'unknown'}`,
  );
  out.push(`hosts:    ${m.hostBridges.map(hostBridgeNote).join('; ')}`);
  out.push('', c.bold('PCI tree'), renderTree(m, c));
  const n = a.endpoints.length;
  const max = opts.maxMatrix ?? 48;
  out.push('', c.bold(`P2P matrix over ${n} endpoints (row = provider, column = client)`));
  if (max === 0 || n <= max) {
    out.push(renderMatrix(a, c));
    out.push(
      c.dim(
        'B<n> = bus address (peer to peer below a switch/bridge), H<n> = through the host bridge, -- = not supported, X = self; <n> = pci_p2pdma_distance()',
      ),
    );
    if (opts.topoClass) {
      out.push('', c.bold('Link classes (nvidia-smi topo -m style)'), renderMatrix(a, c, opts.topoClass));
      out.push(
        c.dim(
          'PIX = one switch/bridge, PXB = several bridges, PHB = host bridge, NODE = host bridges of one NUMA node, SYS = across NUMA nodes',
        ),
      );
    }
  } else {
    out.push(`(${n} endpoints: too many to print; use --filter gpu,nvme,... or a BDF prefix, or --json)`);
  }
  const counts = [0, 0, 0, 0];
  for (let k = 0; k < n * n; k++) if (k % (n + 1) !== 0) counts[a.matrix.mapCode[k]!]!++;
  out.push(
    '',
    `pairs (self excluded): ${c.green(`${counts[MAP_BUS_ADDR]} bus-addr`)}, ${c.yellow(`${counts[MAP_THRU_HOST_BRIDGE]} thru-host-bridge`)}, ${c.red(`${counts[MAP_NOT_SUPPORTED]} not-supported`)}`,
  );
  out.push('', c.bold(`Findings (${a.findings.length})`));
  if (a.findings.length === 0) out.push('every pair goes peer to peer below a common bridge.');
  a.findings.forEach((f, i) => {
    const ex = f.pairs
      .slice(0, 3)
      .map(([p, q]) => `${p} -> ${q}`)
      .join(', ');
    const more = f.pairs.length > 3 ? ` and ${f.pairs.length - 3} more` : '';
    const verdict = f.mapType === 'not-supported' ? c.red('refused') : c.yellow('through the host bridge');
    out.push(`${i + 1}. ${verdict}: ${f.pairs.length} pair(s): ${ex}${more}`);
    for (const w of f.why) out.push(`   why: ${w}`);
    for (const x of f.fixes) out.push(`   fix: ${x}`);
  });
  const ev = a.evidence;
  const boot = m.notes.filter((n) => n.startsWith('kernel: '));
  const notes = m.notes.filter((n) => !n.startsWith('kernel: '));
  if (ev.acsUnknown.length || ev.portTypeInferred.length || notes.length) {
    out.push('', c.bold('Evidence'));
    for (const note of notes) out.push(`- ${note}`);
    if (ev.acsUnknown.length) {
      out.push(
        `- ACS state unknown on ${ev.acsUnknown.length} function(s) (config space not readable past 64 bytes): verdicts assume no ACS redirect; ${ev.pairsDependingOnAcs} pair(s) would change if redirect were on. Capture as root to settle it.`,
      );
    }
    if (ev.portTypeInferred.length)
      out.push(`- PCIe port type inferred from the tree for ${ev.portTypeInferred.join(', ')}`);
  }
  if (boot.length) {
    out.push('', c.bold('Kernel boot log (ACS programming)'));
    for (const line of boot) out.push(`  ${line.slice('kernel: '.length)}`);
  }
  return out.join('\n');
}
