// NVMe definitions the Linux driver uses (include/linux/nvme.h): controller registers and their
// fields, the 64-byte submission and 16-byte completion entries, opcodes, SGL descriptor types,
// Identify data offsets, status codes, and the status -> block status table of drivers/nvme/host/
// core.c (`nvme_error_status()`), with the verbose names of constants.c for the error log line.
//
//   BAR0: CAP 0x00  VS 0x08  CC 0x14  CSTS 0x1c  AQA 0x24  ASQ 0x28  ACQ 0x30  CMBLOC 0x38  CMBSZ 0x3c
//         CMBMSC 0x50 ... doorbells from 0x1000: SQ y tail at 0x1000 + 2y*(4 << DSTRD), CQ y head next
//   SQE: opcode | flags (PSDT) | command id | nsid | ... | DPTR (PRP1, PRP2 or one SGL descriptor) | CDW10-15
//   CQE: result | sq head | sq id | command id | status (phase bit 0, status field bits 1-15)

// Register offsets and bits that the device model defines too (the NVMe specification's values): one
// definition, shared.
import {
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_RANGE,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_SUCCESS,
} from '../../../hw/devices/nvme-regs.js';

export {
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CC_ENABLE,
  NVME_CC_MPS_SHIFT,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_CMBSZ_CQS,
  NVME_CMBSZ_LISTS,
  NVME_CMBSZ_RDS,
  NVME_CMBSZ_SQS,
  NVME_CMBSZ_WDS,
  NVME_CMD_READ,
  NVME_CMD_SGL_METABUF,
  NVME_CMD_WRITE,
  NVME_CSTS_CFS,
  NVME_CSTS_RDY,
  NVME_FEAT_NUM_QUEUES,
  NVME_ID_CNS_CTRL,
  NVME_ID_CNS_NS,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CAP,
  NVME_REG_CC,
  NVME_REG_CMBLOC,
  NVME_REG_CMBMSC,
  NVME_REG_CMBSZ,
  NVME_REG_CSTS,
  NVME_REG_DBS,
  NVME_REG_VS,
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_RANGE,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_SUCCESS,
} from '../../../hw/devices/nvme-regs.js';

import type { BlkStatus } from '../../block/blk-status.js';

/** CAP fields (bigint: the register is 64 bits). */
export const capMqes = (cap: bigint): number => Number(cap & 0xffffn);
export const capTimeout = (cap: bigint): number => Number((cap >> 24n) & 0xffn);
export const capStride = (cap: bigint): number => Number((cap >> 32n) & 0xfn);
export const capMpsmin = (cap: bigint): number => Number((cap >> 48n) & 0xfn);
export const capCmbs = (cap: bigint): boolean => ((cap >> 57n) & 1n) === 1n;

export const NVME_CC_CSS_NVM = 0 << 4;
export const NVME_CC_IOSQES = 6 << 16;
export const NVME_CC_IOCQES = 4 << 20;

/** CMBSZ bits and fields. */
export const cmbszSzu = (cmbsz: number): number => (cmbsz >>> 8) & 0xf;
export const cmbszSz = (cmbsz: number): number => cmbsz >>> 12;
/** `nvme_cmb_size_unit()`: 4 KiB << (4 * SZU). */
export const cmbSizeUnit = (cmbsz: number): bigint => 1n << BigInt(12 + 4 * cmbszSzu(cmbsz));
export const cmblocBir = (cmbloc: number): number => cmbloc & 0x7;
export const cmblocOfst = (cmbloc: number): number => cmbloc >>> 12;

/** `NVME_CTRL_PAGE_SIZE`: the driver always uses 4 KiB controller pages. */
export const NVME_CTRL_PAGE_SHIFT = 12;
export const NVME_CTRL_PAGE_SIZE = 4096;

/** Command flags: PSDT (PRP or SGL for the data pointer). */

/** SGL descriptor types (`type << 4 | subtype`). */
export const NVME_SGL_FMT_DATA_DESC = 0x00;
export const NVME_SGL_FMT_SEG_DESC = 0x02;
export const NVME_SGL_FMT_LAST_SEG_DESC = 0x03;

/** Identify Controller offsets. */
export const ID_CTRL_MDTS = 77;
export const ID_CTRL_SGLS = 536;
export const ID_CTRL_NN = 516;
/** Identify Namespace offsets. */
export const ID_NS_NSZE = 0;
export const ID_NS_FLBAS = 26;
export const ID_NS_LBAF = 128;

/** Status field (CQE status >> 1): SC bits 0-7, SCT bits 8-10, DNR bit 14. */
export const NVME_SC_SGL_INVALID_LAST = 0x0f;
export const NVME_SC_CAP_EXCEEDED = 0x81;
export const NVME_SC_DNR = 0x4000;
export const NVME_SCT_SC_MASK = 0x7ff;

/** `nvme_error_status()` of drivers/nvme/host/core.c for the codes the model produces. */
export function nvmeErrorStatus(status: number): BlkStatus {
  switch (status & NVME_SCT_SC_MASK) {
    case NVME_SC_SUCCESS:
      return 'ok';
    case NVME_SC_CAP_EXCEEDED:
      return 'nospc';
    case NVME_SC_LBA_RANGE:
      return 'target';
    case NVME_SC_INVALID_OPCODE:
    case NVME_SC_INVALID_FIELD:
      return 'notsupp';
    default:
      return 'ioerr';
  }
}

/** `nvme_get_error_status_str()` (CONFIG_NVME_VERBOSE_ERRORS) for the generic codes above. */
export function nvmeStatusStr(status: number): string {
  const names: Record<number, string> = {
    [NVME_SC_SUCCESS]: 'Success',
    [NVME_SC_INVALID_OPCODE]: 'Invalid Command Opcode',
    [NVME_SC_INVALID_FIELD]: 'Invalid Field in Command',
    [NVME_SC_DATA_XFER_ERROR]: 'Data Transfer Error',
    [NVME_SC_SGL_INVALID_LAST]: 'SGL Segment Descriptor Invalid',
    [NVME_SC_PRP_INVALID_OFFSET]: 'PRP Offset Invalid',
    [NVME_SC_LBA_RANGE]: 'LBA Out of Range',
    [NVME_SC_CAP_EXCEEDED]: 'Capacity Exceeded',
  };
  return names[status & NVME_SCT_SC_MASK] ?? 'Unknown';
}

/** A 64-byte submission queue entry under construction. */
export class NvmeCommand {
  readonly bytes = new Uint8Array(64);
  private readonly v = new DataView(this.bytes.buffer);
  set opcode(o: number) {
    this.bytes[0] = o;
  }
  get opcode(): number {
    return this.bytes[0]!;
  }
  set flags(f: number) {
    this.bytes[1] = f;
  }
  get flags(): number {
    return this.bytes[1]!;
  }
  set commandId(id: number) {
    this.v.setUint16(2, id, true);
  }
  get commandId(): number {
    return this.v.getUint16(2, true);
  }
  set nsid(n: number) {
    this.v.setUint32(4, n, true);
  }
  setPrp(prp1: bigint, prp2: bigint): void {
    this.v.setBigUint64(24, prp1, true);
    this.v.setBigUint64(32, prp2, true);
  }
  get prp1(): bigint {
    return this.v.getBigUint64(24, true);
  }
  get prp2(): bigint {
    return this.v.getBigUint64(32, true);
  }
  /** The data pointer as one SGL descriptor. */
  setSgl(addr: bigint, len: number, type: number): void {
    this.v.setBigUint64(24, addr, true);
    this.v.setUint32(32, len, true);
    this.bytes.fill(0, 36, 39);
    this.bytes[39] = type << 4;
  }
  setCdw(n: 10 | 11 | 12 | 13 | 14 | 15, value: number): void {
    this.v.setUint32(40 + (n - 10) * 4, value >>> 0, true);
  }
  getCdw(n: 10 | 11 | 12 | 13 | 14 | 15): number {
    return this.v.getUint32(40 + (n - 10) * 4, true);
  }
  /** Read/Write: starting LBA in CDW10-11. */
  setSlba(lba: bigint): void {
    this.v.setBigUint64(40, lba, true);
  }
}

/** A 16-byte SGL descriptor. */
export function sglDesc(addr: bigint, len: number, type: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, addr, true);
  v.setUint32(8, len, true);
  b[15] = type << 4;
  return b;
}

/** A decoded completion queue entry. */
export interface NvmeCqe {
  readonly result: number;
  readonly sqHead: number;
  readonly sqId: number;
  readonly commandId: number;
  /** The status field (CQE bits 17-31: status >> 1). */
  readonly status: number;
  readonly phase: number;
}

export function decodeCqe(b: Uint8Array): NvmeCqe {
  const v = new DataView(b.buffer, b.byteOffset, 16);
  const st = v.getUint16(14, true);
  return {
    result: v.getUint32(0, true),
    sqHead: v.getUint16(8, true),
    sqId: v.getUint16(10, true),
    commandId: v.getUint16(12, true),
    status: st >>> 1,
    phase: st & 1,
  };
}

/** `nvme_get_opcode_str()` for I/O commands. */
export const nvmeOpcodeStr = (op: number): string =>
  op === NVME_CMD_READ ? 'Read' : op === NVME_CMD_WRITE ? 'Write' : 'Unknown';
