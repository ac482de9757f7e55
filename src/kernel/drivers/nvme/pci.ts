// The Linux NVMe PCI driver (drivers/nvme/host/pci.c with the parts of core.c it leans on), driving
// a controller only through its registers, queues in host memory and interrupts:
//
//   nvme_probe -> nvme_pci_enable: 64-bit DMA mask, CAP (queue depth, doorbell stride), nvme_map_cmb
//              -> admin queue: CC.EN=0, wait !RDY, AQA/ASQ/ACQ, CC = EN|MPS|IOSQES|IOCQES, wait RDY
//              -> Identify Controller (MDTS, SGLS), Set Features Number of Queues,
//                 Create I/O CQ / SQ (one pair, interrupt vector 1), Identify Namespace 1
//              -> disk nvme<N>n1: limits from MDTS, dma_opt_mapping_size(), virt boundary 4 KiB,
//                 BLK_FEAT_PCI_P2PDMA when the DMA ops handle P2P pages
//   queue_rq   -> nvme_setup_rw + nvme_map_data (pci-map.ts) -> SQE into the SQ, tail doorbell
//   interrupt  -> CQEs while the phase matches -> unmap, nvme_error_status, end the request,
//                 CQ head doorbell
//
// Probing runs as a task on the engine (register polls sleep in virtual time, admin commands wait
// for their completion interrupt), so it interleaves with the controller model like the real thing.

import { physAddr } from '../../../hw/addr.js';
import type { PciFunction } from '../../../hw/pci.js';
import { sleep, spawn, type Task, type TaskBody, WaitQueue, waitOn } from '../../../sim/task.js';
import {
  BLK_DEF_MAX_SECTORS_CAP,
  blkMqAllocQueue,
  blkMqEndRequest,
  type Request,
  type RequestQueue,
} from '../../block/blk-mq.js';
import type { BlkStatus } from '../../block/blk-status.js';
import type { DmaDevice } from '../../dma/device.js';
import { dmaDeviceOf } from '../../dma/dma-context.js';
import { DMA_BIT_MASK } from '../../dma/dma-types.js';
import { dmaOptMappingSize, dmaPciP2pdmaSupported, dmaSetMaskAndCoherent } from '../../dma/mapping.js';
import { err, type KResult, ok } from '../../errno.js';
import type { Kernel } from '../../kernel.js';
import type { KernelVersion } from '../../profile.js';
import { type CoherentBuf, dmaAllocCoherent, dmaPoolCreate } from './coherent.js';
import { nvmeMapCmb } from './nvme-cmb.js';
import { allocQueue, type NvmeQueue, pollCq, submitCmd } from './pci-queue.js';

export { type NvmeQueue, queueRing } from './pci-queue.js';

import {
  capMqes,
  capStride,
  capTimeout,
  ID_CTRL_MDTS,
  ID_CTRL_SGLS,
  ID_NS_FLBAS,
  ID_NS_LBAF,
  ID_NS_NSZE,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CC_ENABLE,
  NVME_CC_IOCQES,
  NVME_CC_IOSQES,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CSTS_RDY,
  NVME_FEAT_NUM_QUEUES,
  NVME_ID_CNS_CTRL,
  NVME_ID_CNS_NS,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CAP,
  NVME_REG_CC,
  NVME_REG_CSTS,
  NvmeCommand,
  type NvmeCqe,
  nvmeErrorStatus,
  nvmeOpcodeStr,
  nvmeStatusStr,
} from './nvme-defs.js';
import {
  type NvmeIod,
  type NvmeMapCtx,
  newIod,
  nvmeMapData,
  nvmeUnmapData,
  SGL_THRESHOLD,
} from './pci-map.js';
import { nvmeMapDataSg } from './pci-map-sg.js';

/** How each kernel maps request data: 6.1 through a scatterlist, 6.17+ with the block DMA iterator. */
export const NVME_MAP_DATA: Readonly<Record<KernelVersion, typeof nvmeMapData>> = {
  '6.1': nvmeMapDataSg,
  newest: nvmeMapData,
};

/** What the driver sees of the hardware: BAR0 registers and MSI-X vectors. */
export interface NvmeHwPort {
  read32(off: number): number;
  write32(off: number, v: number): void;
  read64(off: number): bigint;
  write64(off: number, v: bigint): void;
  /** `request_irq()` for an MSI-X vector. */
  requestIrq(vector: number, handler: () => void): void;
}

/** `NVME_AQ_DEPTH`, `io_queue_depth` default, `NVME_MAX_BYTES`, `NVME_MAX_SEGS`. */
export const NVME_AQ_DEPTH = 32;
export const NVME_IO_QUEUE_DEPTH = 1024;
export const NVME_MAX_BYTES = 8 * 1024 * 1024;
export const NVME_MAX_SEGS = 128;

/** Driver options a scenario may set (module parameters). */
export interface NvmeDriverOptions {
  /** `sgl_threshold` (bytes; 0 disables SGLs). */
  readonly sglThreshold?: number | undefined;
  /** `io_queue_depth`. */
  readonly ioQueueDepth?: number | undefined;
  /**
   * Fault seam, not a kernel option: a driver bug that unmaps a request's data right after building
   * the command, before the controller touches it (use after unmap). Behind an IOMMU in strict mode
   * the controller's DMA then hits unmapped IOVAs: IOMMU faults, Data Transfer Error, -EIO.
   */
  readonly faultUnmapBeforeDma?: boolean | undefined;
}

/** `struct nvme_dev` + `struct nvme_ctrl` + the one namespace. */
export interface NvmeDev {
  readonly k: Kernel;
  readonly fn: PciFunction;
  readonly dev: DmaDevice;
  readonly port: NvmeHwPort;
  /** "nvme0". */
  readonly name: string;
  cap: bigint;
  dbStride: number;
  admin: NvmeQueue | null;
  io: NvmeQueue | null;
  mdts: number;
  sgls: number;
  maxHwSectors: number;
  /** Bytes of CMB registered as P2PDMA memory (0: none). */
  cmbSize: bigint;
  lbaShift: number;
  nsze: bigint;
  disk: RequestQueue | null;
  state: 'probing' | 'live' | 'dead';
  readonly opts: NvmeDriverOptions;
  mapCtx: NvmeMapCtx | null;
  readonly adminWait: WaitQueue;
  readonly errOnce: Set<string>;
}

/** Submit an admin command and wait (in the probe task) for its completion. */
function* adminCmd(d: NvmeDev, cmd: NvmeCommand): TaskBody<NvmeCqe> {
  const q = d.admin!;
  let got: NvmeCqe | null = null;
  submitCmd(d, q, cmd, { rq: null, done: (c) => (got = c) });
  while (got === null)
    if ((yield waitOn(d.adminWait, 60e9)) === false) throw new Error(`${d.name}: admin command timed out`);
  return got;
}

/** `nvme_wait_ready()`: poll CSTS.RDY every millisecond up to CAP.TO * 500 ms. */
function* waitReady(d: NvmeDev, enabled: boolean): TaskBody<boolean> {
  const deadline = d.k.engine.nowNs + (capTimeout(d.cap) + 1) * 500e6;
  while (((d.port.read32(NVME_REG_CSTS) & NVME_CSTS_RDY) !== 0) !== enabled) {
    if (d.k.engine.nowNs > deadline) return false;
    yield sleep(1e6);
  }
  return true;
}

function identify(_d: NvmeDev, cns: number, nsid: number, buf: CoherentBuf): NvmeCommand {
  const c = new NvmeCommand();
  c.opcode = NVME_ADMIN_IDENTIFY;
  c.nsid = nsid;
  c.setPrp(buf.dma, 0n);
  c.setCdw(10, cns);
  return c;
}

/** The admin queue: disable, program AQA/ASQ/ACQ, enable, wait ready. */
function* configureAdminQueue(d: NvmeDev): TaskBody<KResult<void>> {
  d.port.write32(NVME_REG_CC, 0);
  if (!(yield* waitReady(d, false))) return err('ENODEV', 'controller did not become not-ready');
  const q = allocQueue(d, 0, NVME_AQ_DEPTH);
  if (!q.ok) return q;
  d.admin = q.value;
  d.port.requestIrq(0, () => {
    pollCq(d, q.value);
    d.adminWait.wakeAll();
  });
  d.port.write32(NVME_REG_AQA, (NVME_AQ_DEPTH - 1) | ((NVME_AQ_DEPTH - 1) << 16));
  d.port.write64(NVME_REG_ASQ, BigInt(q.value.sq.dma));
  d.port.write64(NVME_REG_ACQ, BigInt(q.value.cq.dma));
  d.port.write32(NVME_REG_CC, NVME_CC_ENABLE | NVME_CC_IOSQES | NVME_CC_IOCQES);
  if (!(yield* waitReady(d, true))) return err('ENODEV', 'controller did not become ready');
  return ok(undefined);
}

/** Identify Controller, queues, Identify Namespace. */
function* initCtrl(d: NvmeDev): TaskBody<KResult<void>> {
  const buf = dmaAllocCoherent(d.k, d.dev, 4096);
  if (!buf.ok) return buf;
  const idc = yield* adminCmd(d, identify(d, NVME_ID_CNS_CTRL, 0, buf.value));
  if (idc.status !== 0) return err('EIO', `Identify Controller failed (status 0x${idc.status.toString(16)})`);
  const ctrl = d.k.dma.memory.read(buf.value.phys, 4096);
  d.mdts = ctrl[ID_CTRL_MDTS]!;
  d.sgls = new DataView(ctrl.buffer).getUint32(ID_CTRL_SGLS, true);
  const sf = new NvmeCommand();
  sf.opcode = NVME_ADMIN_SET_FEATURES;
  sf.setCdw(10, NVME_FEAT_NUM_QUEUES);
  sf.setCdw(11, 0); // one submission and one completion queue (0-based counts)
  yield* adminCmd(d, sf);
  const depth = Math.min(capMqes(d.cap) + 1, d.opts.ioQueueDepth ?? NVME_IO_QUEUE_DEPTH);
  const q = allocQueue(d, 1, depth);
  if (!q.ok) return q;
  d.port.requestIrq(1, () => pollCq(d, q.value));
  const ccq = new NvmeCommand();
  ccq.opcode = NVME_ADMIN_CREATE_CQ;
  ccq.setPrp(q.value.cq.dma, 0n);
  ccq.setCdw(10, 1 | ((depth - 1) << 16));
  ccq.setCdw(11, 0b11 | (1 << 16)); // physically contiguous, interrupts on, vector 1
  if ((yield* adminCmd(d, ccq)).status !== 0) return err('EIO', 'Create I/O Completion Queue failed');
  const csq = new NvmeCommand();
  csq.opcode = NVME_ADMIN_CREATE_SQ;
  csq.setPrp(q.value.sq.dma, 0n);
  csq.setCdw(10, 1 | ((depth - 1) << 16));
  csq.setCdw(11, 1 | (1 << 16)); // physically contiguous, CQ 1
  if ((yield* adminCmd(d, csq)).status !== 0) return err('EIO', 'Create I/O Submission Queue failed');
  d.io = q.value;
  const idn = yield* adminCmd(d, identify(d, NVME_ID_CNS_NS, 1, buf.value));
  if (idn.status !== 0) return err('EIO', 'Identify Namespace failed');
  const ns = d.k.dma.memory.read(buf.value.phys, 4096);
  const v = new DataView(ns.buffer);
  d.nsze = v.getBigUint64(ID_NS_NSZE, true);
  const lbaf = (ns[ID_NS_FLBAS]! & 0xf) + (((ns[ID_NS_FLBAS]! >> 5) & 0x3) << 4);
  d.lbaShift = (v.getUint32(ID_NS_LBAF + 4 * lbaf, true) >>> 16) & 0xff;
  return ok(undefined);
}

/** `nvme_mps_to_sectors()`: MDTS in 512-byte sectors (MDTS is a power of two of CAP.MPSMIN pages). */
const mdtsSectors = (d: NvmeDev): number => 2 ** (d.mdts + Number((d.cap >> 48n) & 0xfn) + 12 - 9);

/** `nvme_alloc_ns()` + `nvme_set_ctrl_limits()`: the namespace's disk and its queue limits. */
function addDisk(d: NvmeDev): RequestQueue {
  // nvme_pci_alloc_dev: at most NVME_MAX_BYTES, and no more than the DMA layer maps cheaply (the IOVA
  // rcache range behind an IOMMU); then the controller's MDTS.
  const opt = dmaOptMappingSize(d.dev) >> 9n;
  let maxHw = Math.min(NVME_MAX_BYTES >> 9, opt > BigInt(0xffff_ffff) ? 0xffff_ffff : Number(opt));
  if (d.mdts > 0) maxHw = Math.min(maxHw, mdtsSectors(d));
  d.maxHwSectors = maxHw;
  const io = d.io!;
  const q = blkMqAllocQueue({
    name: `${d.name}n1`,
    limits: {
      logicalBlockSize: 1 << d.lbaShift,
      maxHwSectors: maxHw,
      maxSectors: Math.min(maxHw, BLK_DEF_MAX_SECTORS_CAP),
      maxSegments: NVME_MAX_SEGS,
      maxSegmentSize: 0xffff_ffff,
      segBoundaryMask: 0xffff_ffffn,
      virtBoundaryMask: 4095,
      dmaAlignment: 3,
      pciP2pdma: dmaPciP2pdmaSupported(d.dev),
    },
    ops: { queueRq: (rq) => nvmeQueueRq(d, rq) },
    depth: io.depth - 1,
    capacitySectors: Number(d.nsze << BigInt(d.lbaShift - 9)),
    engine: d.k.engine,
    log: d.k.log,
    kmm: d.k.mm,
  });
  d.mapCtx = {
    dev: d.dev,
    smallPool: dmaPoolCreate(d.k, d.dev, 'prp list 256', 256),
    largePool: dmaPoolCreate(d.k, d.dev, 'prp list page', 4096),
    sglSupported: (d.sgls & 0b11) !== 0,
    qid: 1,
    sglThreshold: d.opts.sglThreshold ?? SGL_THRESHOLD,
    write: (phys, data) => d.k.dma.memory.write(physAddr(phys), data),
    onceErr: (text) => {
      if (d.errOnce.has(text)) return;
      d.errOnce.add(text);
      d.k.log.devErr(d.fn, text);
    },
  };
  return q;
}

/** `nvme_log_error()` (verbose names): the controller's error for an I/O command. */
function logError(d: NvmeDev, rq: Request, iod: NvmeIod, status: number): void {
  const sct = (status >> 8) & 0x7;
  const more = (status & 0x2000) !== 0 ? 'MORE ' : '';
  const dnr = (status & 0x4000) !== 0 ? 'DNR ' : '';
  d.k.log.printk(
    'err',
    `${d.name}n1: ${nvmeOpcodeStr(iod.cmd.opcode)}(0x${iod.cmd.opcode.toString(16)}) @ LBA ${rq.sector >> (d.lbaShift - 9)}, ${rq.dataLen >> d.lbaShift} blocks, ${nvmeStatusStr(status)} (sct 0x${sct.toString(16)} / sc 0x${(status & 0xff).toString(16)}) ${more}${dnr}`,
  );
}

/** `nvme_pci_complete_rq()` + `nvme_end_req()`. */
function completeRq(d: NvmeDev, rq: Request, iod: NvmeIod, cqe: NvmeCqe): void {
  if (!d.opts.faultUnmapBeforeDma) nvmeUnmapData(d.mapCtx!, rq, iod);
  const st: BlkStatus = nvmeErrorStatus(cqe.status);
  if (st !== 'ok') logError(d, rq, iod, cqe.status);
  blkMqEndRequest(rq, st);
}

/**
 * `nvme_queue_rq()`: build the Read/Write command (`nvme_setup_rw`), map the data, and submit.
 * @returns 'ok' when submitted; the mapping status otherwise ('inval' for unreachable P2P memory,
 *   'resource', 'ioerr'), which blk-mq turns into the request's completion.
 */
export function nvmeQueueRq(d: NvmeDev, rq: Request): BlkStatus {
  if (d.state !== 'live' || d.io === null || d.mapCtx === null) return 'ioerr';
  const iod = newIod();
  rq.pdu = iod;
  iod.cmd.opcode = rq.op === 'read' ? NVME_CMD_READ : NVME_CMD_WRITE;
  iod.cmd.nsid = 1;
  iod.cmd.setSlba(BigInt(rq.sector >> (d.lbaShift - 9)));
  iod.cmd.setCdw(12, (rq.dataLen >> d.lbaShift) - 1);
  const st = NVME_MAP_DATA[d.k.version](d.mapCtx, rq, iod);
  if (st !== 'ok') return st;
  if (d.opts.faultUnmapBeforeDma) nvmeUnmapData(d.mapCtx, rq, iod);
  submitCmd(d, d.io, iod.cmd, { rq, done: (cqe) => completeRq(d, rq, iod, cqe) });
  return 'ok';
}

function* probeTask(d: NvmeDev, onDone: (r: KResult<NvmeDev>) => void): TaskBody<void> {
  const fail = (r: KResult<unknown> & { ok: false }): void => {
    d.state = 'dead';
    d.k.log.devErr(d.fn, `probe failed: ${r.detail}`);
    onDone(r);
  };
  const m = dmaSetMaskAndCoherent(d.dev, DMA_BIT_MASK(64));
  if (!m.ok) return fail(m);
  d.cap = d.port.read64(NVME_REG_CAP);
  d.dbStride = 1 << capStride(d.cap);
  nvmeMapCmb(d);
  const a = yield* configureAdminQueue(d);
  if (!a.ok) return fail(a);
  const c = yield* initCtrl(d);
  if (!c.ok) return fail(c);
  d.state = 'live';
  d.disk = addDisk(d);
  onDone(ok(d));
}

/**
 * `nvme_probe()`: bind the driver to an NVMe function and bring the controller up in a task.
 * @returns the device at once (state 'probing'); `onDone` gets it when live, or the error
 *   (ENODEV: the controller never became ready; EIO: an admin command failed; ENOMEM).
 */
export function nvmeProbe(
  k: Kernel,
  fn: PciFunction,
  port: NvmeHwPort,
  name: string,
  opts: NvmeDriverOptions = {},
  onDone: (r: KResult<NvmeDev>) => void = () => {},
): { dev: NvmeDev; task: Task<void> } {
  const d: NvmeDev = {
    k,
    fn,
    dev: dmaDeviceOf(k.dma, fn),
    port,
    name,
    cap: 0n,
    dbStride: 1,
    admin: null,
    io: null,
    mdts: 0,
    sgls: 0,
    maxHwSectors: 0,
    cmbSize: 0n,
    lbaShift: 9,
    nsze: 0n,
    disk: null,
    state: 'probing',
    opts,
    mapCtx: null,
    adminWait: new WaitQueue(),
    errOnce: new Set(),
  };
  return { dev: d, task: spawn(k.engine, `nvme probe ${fn.name}`, probeTask(d, onDone)) };
}
