// A dma-buf scenario run (dmabuf-evict, vfio-revoke) as one JSON document or as text. Pure: receives
// the run's result, returns an object or a string. Times are virtual ns, rounded to whole ns.
//   JSON: { kind, scenario, machine, kernel, seed, iommu, verified, durationNs, ...the kind's figures
//           (vfio-revoke: accessesAfterRevoke, ...), timeline: [{ ns, who, what, detail }],
//           warnings: [{ func, message, call, backtrace }], ledger, kernelLog, expectations }

import pc from 'picocolors';
import type { DmabufRunResult } from '../analysis/run/dmabuf/dmabuf-run.js';
import { fmtBytes, fmtNs } from './run-text.js';

const ns = (v: number | null): number | null => (v === null ? null : Math.round(v));

/** The JSON document of a dma-buf run. */
export function dmabufRunJson(r: DmabufRunResult) {
  const common = {
    kind: r.kind,
    scenario: r.scenario,
    machine: r.machine,
    kernel: r.kernel,
    seed: r.seed,
    iommu: r.iommu,
    verified: r.verified,
    durationNs: ns(r.durationNs),
  };
  const tail = {
    timeline: r.timeline.map((e) => ({
      ns: ns(e.ns),
      who: e.who,
      what: e.what,
      ...(e.detail ? { detail: e.detail } : {}),
    })),
    warnings: r.warnings,
    ledger: r.ledger,
    kernelLog: r.kernelLog,
    expectations: r.expectations,
  };
  if (r.kind === 'dmabuf-evict') {
    const { timeline: _t, warnings: _w, ledger: _l, kernelLog: _k, expectations: _e, ...rest } = r;
    return {
      ...common,
      ...rest,
      durationNs: ns(r.durationNs),
      mappings: r.mappings.map((m) => ({ ...m, firstNs: ns(m.firstNs), lastNs: ns(m.lastNs) })),
      ...tail,
    };
  }
  const { timeline: _t, warnings: _w, ledger: _l, kernelLog: _k, expectations: _e, ...rest } = r;
  return {
    ...common,
    ...rest,
    durationNs: ns(r.durationNs),
    revokeStartNs: ns(r.revokeStartNs),
    revokeReturnedNs: ns(r.revokeReturnedNs),
    resetDoneNs: ns(r.resetDoneNs),
    iommufd: { ...r.iommufd, firstFailureNs: ns(r.iommufd.firstFailureNs) },
    rdma: { ...r.rdma, firstFailureNs: ns(r.rdma.firstFailureNs) },
    ...tail,
  };
}

type Colors = ReturnType<typeof pc.createColors>;

function figures(r: DmabufRunResult, c: Colors): string[] {
  if (r.kind === 'dmabuf-evict')
    return [
      `Buffer: ${fmtBytes(r.bufferBytes)} exported by ${r.exporter}, ${r.placementBefore} -> ${r.placementAfter} (${r.evictions} eviction(s), ${r.moves} move(s))`,
      `Stream to host memory by ${r.importer}: ${fmtBytes(r.streamedBytes)}, ${r.streamStatus}; ${r.pageFaults} page fault(s)`,
      ...r.mappings.map(
        (m) =>
          `  mapping ${m.mapping} (${m.placement}): ${m.chunks} chunk(s), ${fmtBytes(m.bytes)}, ${fmtNs(m.firstNs)} .. ${fmtNs(m.lastNs)}`,
      ),
      `DMA to the old location after the move: ${r.accessesToOldLocation === 0 ? c.green('none') : c.red(String(r.accessesToOldLocation))}`,
      ...r.violations.slice(0, 10).map((v) => c.red(`  ${v}`)),
    ];
  return [
    `Exported: ${fmtBytes(r.regionBytes)} of ${r.device} BAR ${r.bar}; reset: revoke ${fmtNs(r.revokeStartNs ?? 0)}, returned ${fmtNs(r.revokeReturnedNs ?? 0)}, FLR done ${fmtNs(r.resetDoneNs ?? 0)}`,
    `iommufd (${r.iommufd.device}): ${fmtBytes(r.iommufd.bytes)} written in ${r.iommufd.chunks} chunk(s); then ${r.iommufd.status}`,
    `RDMA (${r.rdma.device}): ${fmtBytes(r.rdma.bytes)} read in ${r.rdma.chunks} chunk(s); then ${r.rdma.status}`,
    `Importer accesses to the BAR: ${r.accessesBeforeRevoke} before the revoke returned, ${r.accessesAfterRevoke === 0 ? c.green('0') : c.red(String(r.accessesAfterRevoke))} after`,
    `IOMMU faults: ${r.iommuFaults.length === 0 ? 'none' : ''}`,
    ...r.iommuFaults.map((f) => c.yellow(`  ${f.requester} ${f.access} ${f.iova}: ${f.reason}`)),
    `BAR range intact: ${r.barIntact ? c.green('yes') : c.red('NO')}; RDMA data: ${r.rdmaDataVerified ? c.green('verified') : c.red('WRONG')}`,
  ];
}

/** The run as text. */
export function renderDmabufRunText(r: DmabufRunResult, opts: { color: boolean }): string {
  const c = pc.createColors(opts.color);
  const w = Math.max(...r.timeline.map((e) => fmtNs(e.ns).length), 4);
  const who = Math.max(...r.timeline.map((e) => e.who.length), 3);
  const out = [
    `${c.bold(`dmasim run ${r.scenario}`)}  seed ${r.seed}, kernel ${r.kernel}, iommu ${r.iommu}, machine ${r.machine}`,
    '',
    ...figures(r, c),
    '',
    c.bold('Timeline (virtual time)'),
    ...r.timeline.map(
      (e) =>
        `  ${fmtNs(e.ns).padStart(w)}  ${e.who.padEnd(who)}  ${e.what}${e.detail ? c.dim(`: ${e.detail}`) : ''}`,
    ),
    '',
    `Kernel warnings: ${r.warnings.length === 0 ? 'none' : ''}`,
    ...r.warnings.map((x) => c.red(`  ${x.func}: ${x.message}${x.call ? ` in ${x.call}` : ''}`)),
    `DMA debug ledger: ${r.ledger.length === 0 ? 'no findings' : ''}`,
    ...r.ledger.map((l) => c.yellow(`  ${l}`)),
    '',
    c.bold(`Kernel log (${r.kernelLog.length} lines during the run)`),
    ...r.kernelLog.slice(0, 20).map((l) => `  ${l}`),
  ];
  if (r.expectations.length > 0) {
    out.push('', c.bold('Expectations'));
    for (const x of r.expectations)
      out.push(`  ${x.ok ? c.green('ok  ') : c.red('FAIL')} ${x.what}: ${x.detail}`);
  }
  out.push(
    '',
    r.verified
      ? c.green('verified: every byte and every invariant checked')
      : c.red('NOT verified: see above'),
  );
  return out.join('\n');
}
