// The vfio-revoke run: a device bound to vfio-pci exports a range of its BAR as a dma-buf to two
// importers that use it at the same time, and the device is reset while they do:
//
//   iommufd:  the range is mapped at an IOVA of an IOAS; a second device attached to that IOAS (a
//             guest's other assigned device) writes into it by DMA, chunk by chunk
//   RDMA:     an RDMA NIC registers the range as a dynamic MR and streams it out to host memory
//   reset:    VFIO_DEVICE_RESET revokes: invalidate (iommufd unmaps its IOVA and waits for the IOTLB
//             drain; the NIC zaps its MR after its reads drain and unmaps), wait for fences and for
//             every mapping to be gone; only then the FLR. After the revoke returns, the iommufd
//             device's next write is an IOMMU fault and the NIC's next read a failed page fault.
//
// Reported: the timeline, accessesAfterRevoke (importer DMAs that reached the BAR after the revoke
// returned: must be 0), the faults, and the data checks: every write that completed before the revoke
// is in the BAR, nothing after it, the rest of the range untouched, the NIC's bytes equal the BAR's.
// Mirrors no kernel file.

import { physAddr } from '../../../hw/addr.js';
import type { Machine, PciFunction } from '../../../hw/pci.js';
import type { DmaBuf } from '../../../kernel/dma-buf/dma-buf.js';
import { kthreadRun, runNonBlocking } from '../../../kernel/dma-buf/sched.js';
import { type KernelOnFabric, kernelOnFabric } from '../../../kernel/drivers/kernel-on-fabric.js';
import type { StreamResult } from '../../../kernel/drivers/rdma/mlx5-mr.js';
import { note } from '../../../kernel/drivers/timeline.js';
import { vfioPciCoreRegisterDevice, vfioPciIoctlReset } from '../../../kernel/drivers/vfio/vfio-pci-core.js';
import { vfioPciCoreFeatureDmaBuf } from '../../../kernel/drivers/vfio/vfio-pci-dmabuf.js';
import { VFIO_DEVICE_FEATURE_GET } from '../../../kernel/drivers/vfio/vfio-uapi.js';
import { Prng } from '../../../sim/prng.js';
import { sleep, WaitQueue } from '../../../sim/task.js';
import { TopologyError } from '../../../topology/errors.js';
import { BarAccessWatch } from './bar-access-watch.js';
import {
  type DmabufRunBase,
  type DmabufRunConfig,
  dmaSpan,
  expectation,
  findFn,
  randomBytes,
  runTail,
  sameBytes,
  withSpans,
} from './dmabuf-run-common.js';
import type { DmabufScenario, VfioRevokeDoc } from './dmabuf-scenario-file.js';
import { startIommufd, startRdma, type Writer } from './vfio-revoke-importers.js';

export interface ImporterReport {
  readonly device: string;
  readonly bytes: number;
  readonly chunks: number;
  readonly status: string;
  readonly firstFailureNs: number | null;
}

export interface VfioRevokeResult extends DmabufRunBase {
  readonly kind: 'vfio-revoke';
  readonly device: string;
  readonly bar: number;
  readonly regionBytes: number;
  readonly revokeStartNs: number | null;
  readonly revokeReturnedNs: number | null;
  readonly resetDoneNs: number | null;
  /** Importer DMAs that reached the BAR after the revoke returned (must be 0). */
  readonly accessesAfterRevoke: number;
  /** Importer DMAs that reached the BAR before. */
  readonly accessesBeforeRevoke: number;
  readonly iommuFaults: readonly { requester: string; iova: string; access: string; reason: string }[];
  readonly iommufd: ImporterReport;
  readonly rdma: ImporterReport;
  readonly barIntact: boolean;
  readonly rdmaDataVerified: boolean;
}

export interface Rig {
  readonly w: KernelOnFabric;
  readonly logMark: number;
  readonly dev: PciFunction;
  readonly client: PciFunction;
  readonly nicFn: PciFunction;
  readonly barPhys: bigint;
  readonly before: Uint8Array;
  readonly dmabuf: DmaBuf;
  readonly vdev: ReturnType<typeof vfioPciCoreRegisterDevice>;
}

function setUp(machine: Machine, sc: DmabufScenario, doc: VfioRevokeDoc, cfg: DmabufRunConfig): Rig {
  if (cfg.iommu === 'off')
    throw new TopologyError(
      sc.path || sc.name,
      'vfio-revoke needs an IOMMU (iommufd): use --iommu strict or lazy',
    );
  if (cfg.kernel !== 'newest')
    throw new TopologyError(
      sc.path || sc.name,
      'VFIO dma-buf export exists from 6.19 on: use --kernel newest',
    );
  const w = kernelOnFabric(machine, { version: cfg.kernel, iommu: cfg.iommu, seed: cfg.seed });
  const logMark = w.k.log.lines.length;
  const dev = findFn(w, sc, doc.device, 'device');
  const bar = dev.bars.find((b) => b.index === doc.bar);
  if (!bar) throw new TopologyError(sc.path || sc.name, `${doc.device} has no BAR ${doc.bar}`);
  const vdev = vfioPciCoreRegisterDevice(w.k, dev, {
    timeline: w.tl,
    ...(doc.reset.duration !== undefined ? { resetNs: doc.reset.duration } : {}),
  });
  const barPhys = bar.cpuStart + doc.region.offset;
  const before = randomBytes(new Prng(cfg.seed ^ 0x0bad_ba55), Number(doc.region.length));
  w.k.dma.memory.write(physAddr(barPhys), before);
  const arg = {
    regionIndex: doc.bar,
    openFlags: 0,
    flags: 0,
    nrRanges: 1,
    dmaRanges: [{ offset: doc.region.offset, length: doc.region.length }],
  };
  const d = runNonBlocking(vfioPciCoreFeatureDmaBuf(vdev, VFIO_DEVICE_FEATURE_GET, arg, 32));
  if (!d.ok || d.value === 0)
    throw new TopologyError(
      sc.path || sc.name,
      `VFIO_DEVICE_FEATURE_DMA_BUF: ${d.ok ? 'probe only' : `${d.errno} (${d.detail})`}`,
    );
  return {
    w,
    logMark,
    dev,
    client: findFn(w, sc, doc.iommufd.device, 'iommufd device'),
    nicFn: findFn(w, sc, doc.rdma.nic, 'RDMA NIC'),
    barPhys,
    before,
    dmabuf: d.value,
    vdev,
  };
}

const eventNs = (w: KernelOnFabric, what: string): number | null =>
  w.tl.events.find((e) => e.what === what)?.ns ?? null;

/** Run a vfio-revoke scenario. @returns the result (throws only on bad input or a model bug). */
export function runVfioRevoke(machine: Machine, sc: DmabufScenario, cfg: DmabufRunConfig): VfioRevokeResult {
  const doc = sc.doc as VfioRevokeDoc;
  const r = setUp(machine, sc, doc, cfg);
  const { w } = r;
  const len = Number(doc.region.length);
  const half = len / 2;
  const watch = new BarAccessWatch(w.fab, r.dev, doc.bar, { start: r.barPhys, len: doc.region.length }, [
    r.client.name,
    r.nicFn.name,
  ]);
  w.tl.listeners.push((e) => {
    if (e.what === 'reset: revoke returned, FLR') watch.revoked = true;
  });
  const src = randomBytes(new Prng(cfg.seed ^ 0x5eed_0f10), half);
  const wr: Writer = {
    firstNs: 0,
    lastNs: 0,
    inflight: 0,
    wq: new WaitQueue(),
    bytes: 0,
    chunks: 0,
    failure: null,
  };
  const rdma: { res: StreamResult | null; dst: bigint } = { res: null, dst: 0n };
  startIommufd(r, doc, half, wr, src);
  startRdma(r, doc, half, rdma);
  kthreadRun(
    w.world,
    'reset',
    (function* () {
      yield sleep(doc.reset.at);
      note(w.tl, 'app', 'VFIO_DEVICE_RESET');
      yield* vfioPciIoctlReset(r.vdev);
    })(),
  );
  const t0 = w.engine.nowNs;
  w.engine.run();
  return report(r, sc, cfg, { watch, wr, src, rdma, half, t0 });
}

function report(
  r: Rig,
  sc: DmabufScenario,
  cfg: DmabufRunConfig,
  x: {
    watch: BarAccessWatch;
    wr: Writer;
    src: Uint8Array;
    rdma: { res: StreamResult | null; dst: bigint };
    half: number;
    t0: number;
  },
): VfioRevokeResult {
  const { w, before } = r;
  const doc = sc.doc as VfioRevokeDoc;
  const { watch, wr, src, half } = x;
  const after = w.k.dma.memory.read(physAddr(r.barPhys), before.length);
  const written = wr.bytes;
  const barIntact =
    sameBytes(after.subarray(0, written), src.subarray(0, written)) &&
    sameBytes(after.subarray(written, half), before.subarray(written, half)) &&
    sameBytes(after.subarray(half), before.subarray(half));
  const res = x.rdma.res;
  const streamed = res?.bytes ?? 0;
  const got = w.k.dma.memory.read(physAddr(x.rdma.dst), streamed);
  const rdmaOk = sameBytes(got, before.subarray(half, half + streamed));
  const faults = (w.unit?.faults ?? []).filter((f) => f.requester === r.client.name);
  const verified = barIntact && rdmaOk && watch.after === 0 && w.world.warnings.length === 0;
  const want = doc.expect?.accessesAfterRevoke ?? 0;
  const expectations = [
    expectation(
      `importer accesses to the BAR after revoke returned: ${want}`,
      watch.after === want,
      `${watch.after}`,
    ),
    expectation(
      'BAR range: completed writes in place, nothing else changed',
      barIntact,
      barIntact ? 'intact' : 'corrupted',
    ),
    expectation('RDMA bytes equal the BAR', rdmaOk, `${streamed} bytes`),
    expectation(
      'attempts after the revoke were faults',
      wr.failure !== null && res?.status === 'page-fault-failed',
      `iommufd: ${wr.failure?.reason ?? 'none'}; rdma: ${res?.status ?? 'none'}`,
    ),
  ];
  return {
    kind: 'vfio-revoke',
    scenario: sc.name,
    machine: w.k.machine.name,
    ...cfg,
    verified,
    durationNs: w.engine.nowNs - x.t0,
    device: doc.device,
    bar: doc.bar,
    regionBytes: before.length,
    revokeStartNs: eventNs(w, 'reset: revoke'),
    revokeReturnedNs: eventNs(w, 'reset: revoke returned, FLR'),
    resetDoneNs: eventNs(w, 'reset: done'),
    accessesAfterRevoke: watch.after,
    accessesBeforeRevoke: watch.before,
    iommuFaults: faults.map((f) => ({
      requester: f.requester,
      iova: `0x${f.iova.toString(16)}`,
      access: f.access,
      reason: f.reason,
    })),
    iommufd: {
      device: doc.iommufd.device,
      bytes: wr.bytes,
      chunks: wr.chunks,
      status: wr.failure?.reason ?? 'done',
      firstFailureNs: wr.failure?.ns ?? null,
    },
    rdma: {
      device: doc.rdma.nic,
      bytes: streamed,
      chunks: res?.chunks.length ?? 0,
      status: res?.status ?? 'not started',
      firstFailureNs: eventNs(w, 'page fault failed'),
    },
    barIntact,
    rdmaDataVerified: rdmaOk,
    ...runTail(w, r.logMark),
    timeline: withSpans(w.tl.events, spans(doc, wr, res)),
    expectations,
  };
}

/** The importers' DMA as timeline spans: the writes that landed, the reads that streamed. */
function spans(doc: VfioRevokeDoc, wr: Writer, res: StreamResult | null) {
  const out = [];
  if (wr.chunks > 0)
    out.push(
      dmaSpan(doc.iommufd.device, wr.firstNs, wr.lastNs, wr.chunks, wr.bytes, 'written into the BAR by IOVA'),
    );
  const ok = res?.chunks.filter((c) => c.status === 'success') ?? [];
  if (ok.length > 0)
    out.push(
      dmaSpan(
        doc.rdma.nic,
        ok[0]!.postNs,
        Math.max(...ok.map((c) => c.doneNs)),
        ok.length,
        ok.reduce((a, c) => a + c.len, 0),
        'read from the BAR',
      ),
    );
  return out;
}
