// A scenario run as one JSON document. Pure: receives the run's result, returns the object (the CLI
// stringifies it). Addresses are `0x...` strings, byte counts plain numbers. Shape:
//   { scenario, machine, kernel, seed, iommu, verified, bytesMoved, rootComplexBytes, hostMemoryBytes,
//     iommuFaults: [...], errors: [{ transfer, errno, errnoValue, detail, count }],
//     transfers: [{ name, op, device, buffer, bytesMoved, ok, verified, timeNs, GBps,
//                   path: [{ hops: [...], target, via, bytes }] }],
//     links: [...], fabric: { rootComplexBytes, hostMemoryBytes }, ledger, kernelLog, expectations }

import type { RunResult } from '../analysis/run/runner.js';
import type { TransferResult } from '../analysis/run/transfer.js';
import { hex } from '../hw/addr.js';
import { ERRNO } from '../kernel/errno.js';

const gbps = (bytes: number, ns: number): number => (ns > 0 ? Math.round((bytes / ns) * 1000) / 1000 : 0);

function transferJson(t: TransferResult) {
  return {
    name: t.name,
    op: t.op,
    device: t.device,
    buffer: t.buffer,
    bufferKind: t.bufferKind,
    bytesRequested: t.size,
    blockSize: t.blockSize,
    queueDepth: t.queueDepth,
    skipped: t.skipped,
    ok: !t.skipped && t.errors.length === 0,
    bytesMoved: t.bytesMoved,
    verified: t.verified,
    verifyProblems: t.verifyProblems,
    timeNs: t.endNs - t.startNs,
    GBps: gbps(t.bytesMoved, t.endNs - t.startNs),
    errors: t.errors.map((e) => ({
      errno: e.errno,
      errnoValue: -ERRNO[e.errno],
      detail: e.detail,
      count: e.count,
    })),
    path: [
      ...t.traffic.paths.map((p) => ({
        hops: p.hops,
        target: p.target,
        via: p.via,
        bytes: p.bytes,
        dmas: p.dmas,
      })),
      ...(t.internalBytes > 0
        ? [
            {
              hops: [`${t.device} (inside the controller)`],
              target: `${t.device} CMB`,
              via: 'internal',
              bytes: t.internalBytes,
              dmas: 0,
            },
          ]
        : []),
    ],
    rootComplexBytes: t.traffic.rootComplexBytes,
    hostMemoryBytes: t.traffic.hostMemoryBytes,
    iovaBytes: t.traffic.iovaBytes,
    controlBytes: t.traffic.controlBytes,
    refusals: t.traffic.refusals,
  };
}

/** The JSON document of a run. */
export function runJson(r: RunResult) {
  return {
    scenario: r.scenario,
    machine: r.machine,
    kernel: r.kernel,
    seed: r.seed,
    iommu: r.iommu,
    verified: r.verified,
    bytesMoved: r.bytesMoved,
    rootComplexBytes: r.rootComplexBytes,
    hostMemoryBytes: r.hostMemoryBytes,
    iommuFaults: r.iommuFaults.map((f) => ({
      requester: f.requester,
      iova: hex(f.iova),
      access: f.access,
      reason: f.reason,
      domainId: f.domainId,
    })),
    errors: r.errors.map((e) => ({
      transfer: e.transfer,
      errno: e.errno,
      errnoValue: -ERRNO[e.errno],
      detail: e.detail,
      count: e.count,
    })),
    transfers: r.transfers.map(transferJson),
    links: r.links.map((l) => ({
      ...l,
      upUtil: Math.round(l.upUtil * 1e4) / 1e4,
      downUtil: Math.round(l.downUtil * 1e4) / 1e4,
    })),
    fabric: { rootComplexBytes: r.fabricRootComplexBytes, hostMemoryBytes: r.fabricHostMemoryBytes },
    untouched: r.untouched,
    pools: r.pools,
    ledger: r.ledger,
    durationNs: r.durationNs,
    expectations: r.expectations,
    kernelLog: r.kernelLog,
  };
}
