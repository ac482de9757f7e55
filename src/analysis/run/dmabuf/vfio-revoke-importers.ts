// The two importers of the vfio-revoke run, on the device side: a device attached to an iommufd IOAS
// writing into the exported range by IOVA (with the IOTLB drain that makes iommufd's revoke wait for its
// write in flight), and an RDMA NIC streaming the range out through a dynamic MR. Mirrors no kernel file.

import { bytes, type DmaAddr, dmaAddr, PAGE_SHIFT, physAddr } from '../../../hw/addr.js';
import { type CopyResult, DmaEngine } from '../../../hw/devices/dma-engine.js';
import { Nic } from '../../../hw/devices/nic.js';
import { dmaDeviceOf } from '../../../kernel/dma/dma-context.js';
import { DMA_BIT_MASK } from '../../../kernel/dma/dma-types.js';
import { dmaMapPhys, dmaSetMaskAndCoherent } from '../../../kernel/dma/mapping.js';
import { kthreadRun } from '../../../kernel/dma-buf/sched.js';
import {
  iommufdDeviceAttach,
  iommufdIoasMapFile,
  iommufdOpen,
} from '../../../kernel/drivers/iommufd/iommufd-dmabuf.js';
import type { KernelOnFabric } from '../../../kernel/drivers/kernel-on-fabric.js';
import {
  mlx5IbRegUserMrDmabuf,
  mlx5StreamFromMr,
  type StreamResult,
} from '../../../kernel/drivers/rdma/mlx5-mr.js';
import { note } from '../../../kernel/drivers/timeline.js';
import { IOMMU_READ, IOMMU_WRITE, iommuMap } from '../../../kernel/iommu/iommu.js';
import { allocPages } from '../../../kernel/mm/page-alloc.js';
import { type WaitQueue, waitOn } from '../../../sim/task.js';
import type { VfioRevokeDoc } from './dmabuf-scenario-file.js';
import type { Rig } from './vfio-revoke.js';

/** Host pages for `n` bytes. @returns their CPU physical address. */
export function hostPages(w: KernelOnFabric, n: number): bigint {
  const pfn = allocPages(w.k.mm, Math.ceil(n / 4096));
  if (pfn === null) throw new Error('no host pages');
  return BigInt(pfn) << BigInt(PAGE_SHIFT);
}

/** The iommufd device's work: write `len` bytes from guest RAM (srcIova) into the range (dstIova). */
export interface Writer {
  firstNs: number;
  lastNs: number;
  inflight: number;
  readonly wq: WaitQueue;
  bytes: number;
  chunks: number;
  failure: { ns: number; reason: string } | null;
}

function* writeChunks(
  w: KernelOnFabric,
  eng: DmaEngine,
  wr: Writer,
  src: DmaAddr,
  dst: DmaAddr,
  len: number,
  chunk: number,
) {
  for (let off = 0; off < len; off += chunk) {
    const n = Math.min(chunk, len - off);
    let res: CopyResult | null = null;
    wr.inflight++;
    eng.submit({ src: dmaAddr(src + BigInt(off)), dst: dmaAddr(dst + BigInt(off)), len: bytes(n) }, (r) => {
      res = r;
      wr.inflight--;
      wr.wq.wakeAll();
    });
    while (res === null) yield waitOn(wr.wq);
    const r = res as CopyResult;
    if (!r.ok) {
      wr.failure = { ns: w.engine.nowNs, reason: r.fault ? `IOMMU fault (${r.fault.reason})` : r.reason };
      note(w.tl, eng.name, 'DMA write refused', wr.failure.reason);
      return;
    }
    if (wr.chunks === 0) wr.firstNs = r.startNs;
    wr.lastNs = r.endNs;
    wr.bytes += n;
    wr.chunks++;
  }
  note(w.tl, eng.name, 'writes done', `${wr.bytes} bytes`);
}

/** Attach the iommufd importer and start its device's writes (guest RAM mapped next to the range). */
export function startIommufd(r: Rig, doc: VfioRevokeDoc, half: number, wr: Writer, src: Uint8Array): void {
  const { w } = r;
  const ictx = iommufdOpen(w.k, {
    timeline: w.tl,
    drain: function* () {
      while (wr.inflight > 0) yield waitOn(wr.wq);
    },
  });
  if (!ictx.ok) throw new Error(`iommufd: ${ictx.detail}`);
  iommufdDeviceAttach(ictx.value, r.client);
  const srcPhys = hostPages(w, half);
  w.k.dma.memory.write(physAddr(srcPhys), src);
  // The guest's RAM in the same IOAS (IOMMU_IOAS_MAP of pinned user memory, reduced to iommu_map).
  const srcIova = dmaAddr(doc.iommufd.iova + doc.region.length + (1n << 21n));
  iommuMap(ictx.value.domain, srcIova, physAddr(srcPhys), bytes(half), IOMMU_READ | IOMMU_WRITE);
  const eng = new DmaEngine(w.fab, r.client, {
    name: `${r.client.osNames[0] ?? r.client.name} (iommufd)`,
    chunkBytes: 64 * 1024,
    queueDepth: 1,
  });
  kthreadRun(
    w.world,
    'iommufd device',
    (function* () {
      const a = yield* iommufdIoasMapFile(
        ictx.value,
        r.dmabuf,
        0n,
        doc.region.length,
        dmaAddr(doc.iommufd.iova),
      );
      if (!a.ok) {
        note(w.tl, 'iommufd', `map failed: ${a.errno}`, a.detail);
        return;
      }
      yield* writeChunks(
        w,
        eng,
        wr,
        srcIova,
        dmaAddr(doc.iommufd.iova),
        half,
        Number(doc.iommufd.chunk ?? 64n * 1024n),
      );
    })(),
  );
}

/** Register the dynamic MR over the second half and stream it out to host memory. */
export function startRdma(
  r: Rig,
  doc: VfioRevokeDoc,
  half: number,
  out: { res: StreamResult | null; dst: bigint },
): void {
  const { w } = r;
  const nicDma = dmaDeviceOf(w.k.dma, r.nicFn);
  dmaSetMaskAndCoherent(nicDma, DMA_BIT_MASK(64));
  out.dst = hostPages(w, half);
  const dstDma = dmaMapPhys(nicDma, physAddr(out.dst), bytes(half), 'from-device');
  const nic = new Nic(w.fab, r.nicFn);
  const ibdev = { name: doc.rdma.nic, dmaDevice: nicDma, log: [] as string[] };
  kthreadRun(
    w.world,
    'rdma app',
    (function* () {
      const m = yield* mlx5IbRegUserMrDmabuf(ibdev, r.dmabuf, BigInt(half), BigInt(half), 'odp', w.tl);
      if (!m.ok) {
        note(w.tl, doc.rdma.nic, `MR registration failed: ${m.errno}`, m.detail);
        return;
      }
      out.res = yield* mlx5StreamFromMr(nic, m.value, 0n, dstDma, half, {
        chunkBytes: Number(doc.rdma.chunk ?? 256n * 1024n),
        window: doc.rdma.window ?? 4,
      });
      note(
        w.tl,
        doc.rdma.nic,
        out.res.ok ? 'stream finished' : `stream stopped: ${out.res.status}`,
        `${out.res.bytes} bytes`,
      );
    })(),
  );
}
