// The admin command set of the NVMe controller model: Identify (controller, namespace, active
// namespace list), Create/Delete I/O Completion and Submission Queues, Set/Get Features (Number of
// Queues, Volatile Write Cache), Get Log Page (zeros), Abort, Asynchronous Event Request (held).
// Mirrors the commands drivers/nvme/host/core.c and pci.c issue at probe (nvme_identify_ctrl,
// nvme_set_queue_count, adapter_alloc_cq / adapter_alloc_sq, adapter_delete_queue), with the status
// codes the specification gives for each refusal.

import type { DevTask } from './device-task.js';
import type { NvmeController, NvmeResult } from './nvme.js';
import type { NvmeCommand } from './nvme-queues.js';
import * as R from './nvme-regs.js';
import { NVME_OK, nvmeCmdStatus, nvmeStatus } from './nvme-regs.js';

const ok = (result = 0): NvmeResult => ({ status: NVME_OK, result });
const bad = (sc: number): NvmeResult => ({ status: nvmeStatus(sc) });
const badCmd = (sc: number): NvmeResult => ({ status: nvmeCmdStatus(sc) });

function ascii(b: Uint8Array, at: number, len: number, text: string): void {
  for (let i = 0; i < len; i++) b[at + i] = i < text.length ? text.charCodeAt(i) & 0x7f : 0x20;
}

/** Identify Controller data structure (CNS 01h), the fields the model fills. */
export function identifyController(c: NvmeController): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, c.fn.vendor, true);
  dv.setUint16(2, c.fn.subsystemVendor ?? 0, true);
  ascii(b, 4, 20, c.serial);
  ascii(b, 24, 40, c.model);
  ascii(b, 64, 8, '1.0');
  b[72] = 6; // RAB
  b[77] = c.mdts;
  dv.setUint16(78, 1, true); // CNTLID
  dv.setUint32(80, 0x00010400, true); // VER 1.4
  b[258] = 3; // ACL
  b[259] = 3; // AERL: four outstanding async events
  b[260] = 0x02; // FRMW: one slot
  b[512] = 0x66; // SQES: 64-byte entries
  b[513] = 0x44; // CQES: 16-byte entries
  dv.setUint32(516, 1, true); // NN
  dv.setUint32(536, 0x1, true); // SGLS: SGLs supported, no alignment requirement
  return b;
}

/** Identify Namespace data structure (CNS 00h) for namespace 1: one LBA format. */
export function identifyNamespace(c: NvmeController): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  for (const at of [0, 8, 16]) dv.setBigUint64(at, c.nlb, true); // NSZE, NCAP, NUSE
  b[25] = 0; // NLBAF: one format (0-based)
  b[26] = 0; // FLBAS: format 0
  b[128 + 2] = Math.log2(c.lbaBytes); // LBAF0.LBADS
  return b;
}

/** Send `data` to the host buffer the command's PRPs describe (admin commands use PRPs only). */
function* dataToHost(c: NvmeController, cmd: NvmeCommand, data: Uint8Array): DevTask<NvmeResult> {
  const d = yield* c.dataSegments(cmd, data.length, true);
  if (!d.ok) return { status: d.status };
  const moved = yield* c.moveData('write', d.segs, (at, n) => ({
    kind: 'bytes',
    bytes: data.subarray(at, at + n),
  }));
  return moved ? ok() : bad(R.NVME_SC_DATA_XFER_ERROR);
}

function* identify(c: NvmeController, cmd: NvmeCommand): DevTask<NvmeResult> {
  const cns = cmd.cdw[0]! & 0xff;
  if (cns === R.NVME_ID_CNS_CTRL) return yield* dataToHost(c, cmd, identifyController(c));
  if (cns === R.NVME_ID_CNS_NS) {
    if (cmd.nsid !== 1) return bad(R.NVME_SC_INVALID_NS);
    return yield* dataToHost(c, cmd, identifyNamespace(c));
  }
  if (cns === R.NVME_ID_CNS_NS_ACTIVE_LIST) {
    if (cmd.nsid >= 0xfffffffe) return bad(R.NVME_SC_INVALID_NS);
    const list = new Uint8Array(4096);
    if (cmd.nsid < 1) new DataView(list.buffer).setUint32(0, 1, true);
    return yield* dataToHost(c, cmd, list);
  }
  return bad(R.NVME_SC_INVALID_FIELD);
}

/** Checks shared by Create I/O CQ and SQ: queue id, size, contiguity, alignment, CMB placement. */
function queueCheck(c: NvmeController, cmd: NvmeCommand, exists: boolean, cmbBit: number): NvmeResult | null {
  const qid = cmd.cdw[0]! & 0xffff;
  const qsize = (cmd.cdw[0]! >>> 16) + 1;
  if (qid === 0 || qid > c.maxIoQueues || exists) return badCmd(R.NVME_SC_QID_INVALID);
  if (qsize < 2 || qsize > c.mqes + 1) return badCmd(R.NVME_SC_QUEUE_SIZE);
  if (!(cmd.cdw[1]! & R.NVME_QUEUE_PHYS_CONTIG)) return bad(R.NVME_SC_INVALID_FIELD);
  if (cmd.prp1 & BigInt(c.mps - 1)) return bad(R.NVME_SC_INVALID_FIELD);
  const entry = cmbBit === R.NVME_CMBSZ_SQS ? R.NVME_SQE_BYTES : R.NVME_CQE_BYTES;
  if (
    c.inCmb(cmd.prp1, 1) !== null &&
    (c.inCmb(cmd.prp1, qsize * entry) === null || !(c.cmb!.flags & cmbBit))
  )
    return bad(R.NVME_SC_CMB_INVALID_USE);
  return null;
}

function createCq(c: NvmeController, cmd: NvmeCommand): NvmeResult {
  const qid = cmd.cdw[0]! & 0xffff;
  const err = queueCheck(c, cmd, c.cqs.has(qid), R.NVME_CMBSZ_CQS);
  if (err) return err;
  const iv = cmd.cdw[1]! >>> 16;
  if (iv >= c.vectors) return badCmd(R.NVME_SC_INVALID_VECTOR);
  const entries = (cmd.cdw[0]! >>> 16) + 1;
  const ien = (cmd.cdw[1]! & R.NVME_CQ_IRQ_ENABLED) !== 0;
  c.cqs.set(qid, { qid, base: cmd.prp1, entries, ien, iv, head: 0, tail: 0, phase: 1, waiting: [] });
  return ok();
}

function createSq(c: NvmeController, cmd: NvmeCommand): NvmeResult {
  const qid = cmd.cdw[0]! & 0xffff;
  const cqid = cmd.cdw[1]! >>> 16;
  if (cqid === 0 || !c.cqs.has(cqid)) return badCmd(R.NVME_SC_CQ_INVALID);
  const err = queueCheck(c, cmd, c.sqs.has(qid), R.NVME_CMBSZ_SQS);
  if (err) return err;
  const entries = (cmd.cdw[0]! >>> 16) + 1;
  c.sqs.set(qid, { qid, base: cmd.prp1, entries, cqid, head: 0, tail: 0, fetching: false });
  return ok();
}

function deleteQueue(c: NvmeController, cmd: NvmeCommand, cq: boolean): NvmeResult {
  const qid = cmd.cdw[0]! & 0xffff;
  const map = cq ? c.cqs : c.sqs;
  if (qid === 0 || !map.has(qid)) return badCmd(R.NVME_SC_QID_INVALID);
  if (cq && [...c.sqs.values()].some((s) => s.cqid === qid)) return badCmd(R.NVME_SC_INVALID_QUEUE_DELETION);
  map.delete(qid);
  return ok();
}

/** Number of Queues: both counts 0-based, at most what the controller has. */
function numQueues(c: NvmeController, dw11: number | null): NvmeResult {
  const max = c.maxIoQueues - 1;
  const nsq = dw11 === null ? max : Math.min(dw11 & 0xffff, max);
  const ncq = dw11 === null ? max : Math.min(dw11 >>> 16, max);
  return ok(((ncq << 16) | nsq) >>> 0);
}

function features(c: NvmeController, cmd: NvmeCommand, set: boolean): NvmeResult {
  const fid = cmd.cdw[0]! & 0xff;
  if (fid === R.NVME_FEAT_NUM_QUEUES) {
    if (set && ((cmd.cdw[1]! & 0xffff) === 0xffff || cmd.cdw[1]! >>> 16 === 0xffff))
      return bad(R.NVME_SC_INVALID_FIELD);
    return numQueues(c, set ? cmd.cdw[1]! : null);
  }
  if (fid === R.NVME_FEAT_VOLATILE_WC) return ok(0);
  return bad(R.NVME_SC_INVALID_FIELD);
}

/**
 * Execute one admin command.
 * @returns the completion status and result dword, or null for a held Asynchronous Event Request.
 */
export function* nvmeAdmin(c: NvmeController, cmd: NvmeCommand): DevTask<NvmeResult | null> {
  switch (cmd.opc) {
    case R.NVME_ADMIN_IDENTIFY:
      return yield* identify(c, cmd);
    case R.NVME_ADMIN_CREATE_CQ:
      return createCq(c, cmd);
    case R.NVME_ADMIN_CREATE_SQ:
      return createSq(c, cmd);
    case R.NVME_ADMIN_DELETE_CQ:
      return deleteQueue(c, cmd, true);
    case R.NVME_ADMIN_DELETE_SQ:
      return deleteQueue(c, cmd, false);
    case R.NVME_ADMIN_SET_FEATURES:
      return features(c, cmd, true);
    case R.NVME_ADMIN_GET_FEATURES:
      return features(c, cmd, false);
    case R.NVME_ADMIN_GET_LOG_PAGE: {
      const numd = (((cmd.cdw[1]! & 0xffff) << 16) | (cmd.cdw[0]! >>> 16)) + 1;
      return yield* dataToHost(c, cmd, new Uint8Array(numd * 4));
    }
    case R.NVME_ADMIN_ABORT_CMD:
      return ok(1); // bit 0 set: the command was not aborted
    case R.NVME_ADMIN_ASYNC_EVENT:
      if (c.aerOutstanding >= 4) return badCmd(R.NVME_SC_ASYNC_LIMIT);
      c.aerOutstanding++;
      return null;
    default:
      return bad(R.NVME_SC_INVALID_OPCODE);
  }
}
