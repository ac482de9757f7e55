// A scenario run as text for people: what ran (seed and every option first), each transfer with the
// way its data went hop by hop, the links it loaded, root-complex and host-memory traffic, IOMMU
// faults, errors with their errno names, the DMA debug ledger, the kernel log, and the verdict.
// Pure: receives the run's result, returns a string.

import pc from 'picocolors';
import type { RunResult } from '../analysis/run/runner.js';
import type { TransferResult } from '../analysis/run/transfer.js';
import { hex } from '../hw/addr.js';
import { ERRNO } from '../kernel/errno.js';

type Colors = ReturnType<typeof pc.createColors>;

/** 67108864 -> "64.0 MiB". */
export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Virtual time for people. */
export function fmtNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(3)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${Math.round(ns)} ns`;
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

function table(rows: string[][]): string[] {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => `  ${r.map((c, i) => c.padEnd(w[i]!)).join('  ')}`.trimEnd());
}

function transferLines(t: TransferResult, c: Colors): string[] {
  const time = t.endNs - t.startNs;
  const gbps = time > 0 ? (t.bytesMoved / time).toFixed(2) : '-';
  const state = t.skipped
    ? c.dim('skipped (the transfer it follows failed)')
    : t.errors.length > 0
      ? c.red(t.errors.map((e) => `${e.errno} (-${ERRNO[e.errno]}) x${e.count}`).join(', '))
      : c.green('ok');
  const out = [
    `${c.bold(t.name)}: ${t.op} ${t.device} ${t.op === 'read' ? '->' : '<-'} ${t.buffer} (${t.bufferKind}), ${fmtBytes(t.size)} in ${fmtBytes(t.blockSize)} blocks, queue depth ${t.queueDepth}`,
    `    moved ${fmtBytes(t.bytesMoved)} in ${fmtNs(time)} (${gbps} GB/s); ${state}; verified: ${t.skipped ? c.dim('n/a') : t.verified ? c.green('yes') : c.red('NO')}`,
  ];
  for (const p of t.traffic.paths)
    out.push(`    path (${p.via}, ${fmtBytes(p.bytes)}): ${p.hops.join(' > ')} > ${p.target}`);
  if (t.internalBytes > 0)
    out.push(
      `    path (internal, ${fmtBytes(t.internalBytes)}): ${t.device} reads its own CMB inside the controller`,
    );
  for (const f of t.traffic.refusals)
    out.push(c.yellow(`    refused x${f.count}: ${f.requester} ${f.reason}: ${f.detail}`));
  for (const e of t.errors) out.push(`    ${e.errno}: ${e.detail}`);
  for (const v of t.verifyProblems) out.push(c.red(`    verify: ${v}`));
  if (t.traffic.controlBytes > 0)
    out.push(c.dim(`    queue/descriptor traffic: ${fmtBytes(t.traffic.controlBytes)}`));
  return out;
}

/** The run as text. */
export function renderRunText(r: RunResult, opts: { color: boolean }): string {
  const c = pc.createColors(opts.color);
  const out: string[] = [
    `${c.bold(`dmasim run ${r.scenario}`)}  seed ${r.seed}, kernel ${r.kernel}, iommu ${r.iommu}, machine ${r.machine}`,
    '',
    c.bold('Transfers'),
  ];
  for (const t of r.transfers) out.push(...transferLines(t, c).map((l) => `  ${l}`));
  out.push('', c.bold('Links (data and control bytes, utilisation over the run)'));
  if (r.links.length === 0) out.push('  none used');
  else
    out.push(
      ...table([
        ['link', 'rate', 'up', '', 'down', ''],
        ...r.links.map((l) => [
          l.name,
          `${l.gen !== null ? `Gen${l.gen} x${l.width} ` : ''}${l.GBps.toFixed(2)} GB/s`,
          fmtBytes(l.upBytes),
          pct(l.upUtil),
          fmtBytes(l.downBytes),
          pct(l.downUtil),
        ]),
      ]),
    );
  out.push(
    '',
    `Root complex: ${fmtBytes(r.rootComplexBytes)} of data (all traffic ${fmtBytes(r.fabricRootComplexBytes)})`,
    `Host memory:  ${fmtBytes(r.hostMemoryBytes)} of data (all traffic ${fmtBytes(r.fabricHostMemoryBytes)})`,
    `IOMMU faults: ${r.iommuFaults.length === 0 ? 'none' : ''}`,
    ...r.iommuFaults.map((f) => c.red(`  ${f.requester} ${f.access} ${hex(f.iova)}: ${f.reason}`)),
    `Errors: ${r.errors.length === 0 ? 'none' : ''}`,
    ...r.errors.map((e) =>
      c.red(`  ${e.transfer}: ${e.errno} (-${ERRNO[e.errno]}) x${e.count}: ${e.detail}`),
    ),
    ...r.pools.map(
      (p) =>
        `P2PDMA pool of ${p.provider}: ${fmtBytes(p.availableMapped)} of ${fmtBytes(p.size)} free while mapped, ${fmtBytes(p.availableAfter)} after munmap`,
    ),
    `DMA debug ledger: ${r.ledger.length === 0 ? 'no findings' : ''}`,
    ...r.ledger.map((l) => c.yellow(`  ${l}`)),
    '',
    c.bold(`Kernel log (${r.kernelLog.length} lines during the run)`),
    ...r.kernelLog.slice(0, 40).map((l) => `  ${l}`),
    ...(r.kernelLog.length > 40 ? [c.dim(`  ... ${r.kernelLog.length - 40} more (see --json)`)] : []),
  );
  if (r.expectations.length > 0) {
    out.push('', c.bold('Expectations'));
    for (const x of r.expectations)
      out.push(`  ${x.ok ? c.green('ok  ') : c.red('FAIL')} ${x.what}: ${x.detail}`);
  }
  out.push(
    '',
    r.verified
      ? c.green(`verified: every one of the ${fmtBytes(r.bytesMoved)} moved was checked and is right`)
      : c.red('NOT verified: see the verify lines above'),
  );
  return out.join('\n');
}
