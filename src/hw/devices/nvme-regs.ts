// NVMe over PCIe: register offsets and fields of BAR0, command and completion layouts, opcodes and
// status codes, as the NVM Express Base Specification (1.4 / 2.0) defines them and include/linux/nvme.h
// names them (NVME_REG_*, NVME_CC_*, NVME_CMBSZ_*, NVME_SC_*). Shared by the controller model and by
// whatever drives it (the host side of nvme-host.ts, the kernel model's driver).

/** Controller registers (offsets into BAR0). */
export const NVME_REG_CAP = 0x00;
export const NVME_REG_VS = 0x08;
export const NVME_REG_INTMS = 0x0c;
export const NVME_REG_INTMC = 0x10;
export const NVME_REG_CC = 0x14;
export const NVME_REG_CSTS = 0x1c;
export const NVME_REG_NSSR = 0x20;
export const NVME_REG_AQA = 0x24;
export const NVME_REG_ASQ = 0x28;
export const NVME_REG_ACQ = 0x30;
export const NVME_REG_CMBLOC = 0x38;
export const NVME_REG_CMBSZ = 0x3c;
export const NVME_REG_CMBMSC = 0x50;
export const NVME_REG_CMBSTS = 0x58;
export const NVME_REG_DBS = 0x1000;

/** CAP fields (64-bit). */
export const NVME_CAP_MQES_MASK = 0xffffn;
export const NVME_CAP_CQR = 1n << 16n;
export const NVME_CAP_TO_SHIFT = 24n;
export const NVME_CAP_DSTRD_SHIFT = 32n;
export const NVME_CAP_CSS_NVM = 1n << 37n;
export const NVME_CAP_MPSMIN_SHIFT = 48n;
export const NVME_CAP_MPSMAX_SHIFT = 52n;
export const NVME_CAP_CMBS = 1n << 57n;

/** CC fields. */
export const NVME_CC_ENABLE = 1 << 0;
export const NVME_CC_MPS_SHIFT = 7;
export const NVME_CC_MPS_MASK = 0xf << 7;
export const NVME_CC_SHN_MASK = 3 << 14;
export const NVME_CC_IOSQES_SHIFT = 16;
export const NVME_CC_IOCQES_SHIFT = 20;

/** CSTS fields. */
export const NVME_CSTS_RDY = 1 << 0;
export const NVME_CSTS_CFS = 1 << 1;
export const NVME_CSTS_SHST_CMPLT = 2 << 2;

/** CMBLOC: BAR indicator and offset (in CMBSZ size units). */
export const NVME_CMBLOC_BIR_MASK = 0x7;
export const NVME_CMBLOC_OFST_SHIFT = 12;

/** CMBSZ: what the CMB may hold, size unit and size. */
export const NVME_CMBSZ_SQS = 1 << 0;
export const NVME_CMBSZ_CQS = 1 << 1;
export const NVME_CMBSZ_LISTS = 1 << 2;
export const NVME_CMBSZ_RDS = 1 << 3;
export const NVME_CMBSZ_WDS = 1 << 4;
export const NVME_CMBSZ_SZU_SHIFT = 8;
export const NVME_CMBSZ_SZU_MASK = 0xf;
export const NVME_CMBSZ_SZ_SHIFT = 12;
export const NVME_CMBSZ_SZ_MASK = 0xfffff;

/** CMBMSC: capabilities registers enabled, controller memory space enabled, controller base address. */
export const NVME_CMBMSC_CRE = 1n << 0n;
export const NVME_CMBMSC_CMSE = 1n << 1n;
export const NVME_CMBMSC_CBA_MASK = ~0xfffn & ((1n << 64n) - 1n);

/** `nvme_cmb_size_unit()`: bytes per CMBSZ.SZU unit, 4 KiB x 16^SZU. */
export const nvmeCmbSizeUnit = (szu: number): bigint => 1n << BigInt(12 + 4 * szu);

/** Queue entry sizes. */
export const NVME_SQE_BYTES = 64;
export const NVME_CQE_BYTES = 16;

/** Command dword 0: opcode, fused, PRP-or-SGL selector (PSDT), command id. */
export const NVME_CMD_PSDT_MASK = 0xc0;
export const NVME_CMD_SGL_METABUF = 1 << 6;
export const NVME_CMD_SGL_METASEG = 1 << 7;
/** Byte offsets inside a submission queue entry. */
export const SQE_OPC = 0;
export const SQE_FLAGS = 1;
export const SQE_CID = 2;
export const SQE_NSID = 4;
export const SQE_MPTR = 16;
export const SQE_DPTR = 24;
export const SQE_PRP2 = 32;
export const SQE_CDW10 = 40;
export const SQE_CDW11 = 44;
export const SQE_CDW12 = 48;

/** Admin opcodes (`enum nvme_admin_opcode`). */
export const NVME_ADMIN_DELETE_SQ = 0x00;
export const NVME_ADMIN_CREATE_SQ = 0x01;
export const NVME_ADMIN_GET_LOG_PAGE = 0x02;
export const NVME_ADMIN_DELETE_CQ = 0x04;
export const NVME_ADMIN_CREATE_CQ = 0x05;
export const NVME_ADMIN_IDENTIFY = 0x06;
export const NVME_ADMIN_ABORT_CMD = 0x08;
export const NVME_ADMIN_SET_FEATURES = 0x09;
export const NVME_ADMIN_GET_FEATURES = 0x0a;
export const NVME_ADMIN_ASYNC_EVENT = 0x0c;

/** I/O opcodes (`enum nvme_opcode`). */
export const NVME_CMD_FLUSH = 0x00;
export const NVME_CMD_WRITE = 0x01;
export const NVME_CMD_READ = 0x02;

export const NVME_ID_CNS_NS = 0x00;
export const NVME_ID_CNS_CTRL = 0x01;
export const NVME_ID_CNS_NS_ACTIVE_LIST = 0x02;
export const NVME_FEAT_NUM_QUEUES = 0x07;
export const NVME_FEAT_VOLATILE_WC = 0x06;
export const NVME_QUEUE_PHYS_CONTIG = 1 << 0;
export const NVME_CQ_IRQ_ENABLED = 1 << 1;

/** SGL descriptor types (identifier byte bits 7:4) and the address subtype. */
export const NVME_SGL_FMT_DATA_DESC = 0x0;
export const NVME_SGL_FMT_BIT_BUCKET = 0x1;
export const NVME_SGL_FMT_SEG_DESC = 0x2;
export const NVME_SGL_FMT_LAST_SEG_DESC = 0x3;
export const NVME_SGL_FMT_ADDRESS = 0x0;
export const NVME_SGL_DESC_BYTES = 16;

/** Status code types and the codes the model reports (generic, command specific, media). */
export const NVME_SCT_GENERIC = 0x0;
export const NVME_SCT_CMD_SPECIFIC = 0x1;
export const NVME_SC_SUCCESS = 0x0;
export const NVME_SC_INVALID_OPCODE = 0x1;
export const NVME_SC_INVALID_FIELD = 0x2;
export const NVME_SC_DATA_XFER_ERROR = 0x4;
export const NVME_SC_INTERNAL = 0x6;
export const NVME_SC_ABORT_QUEUE = 0x8;
export const NVME_SC_INVALID_NS = 0xb;
export const NVME_SC_SGL_INVALID_LAST = 0xd;
export const NVME_SC_SGL_INVALID_COUNT = 0xe;
export const NVME_SC_SGL_INVALID_DATA = 0xf;
export const NVME_SC_SGL_INVALID_TYPE = 0x11;
export const NVME_SC_CMB_INVALID_USE = 0x12;
export const NVME_SC_PRP_INVALID_OFFSET = 0x13;
export const NVME_SC_LBA_RANGE = 0x80;
/** Command specific (SCT 1). */
export const NVME_SC_CQ_INVALID = 0x00;
export const NVME_SC_QID_INVALID = 0x01;
export const NVME_SC_QUEUE_SIZE = 0x02;
export const NVME_SC_ASYNC_LIMIT = 0x05;
export const NVME_SC_INVALID_VECTOR = 0x08;
export const NVME_SC_INVALID_QUEUE_DELETION = 0x0c;

/** A completion status: type, code, do-not-retry. */
export interface NvmeStatus {
  readonly sct: number;
  readonly sc: number;
  readonly dnr: boolean;
}

export const NVME_OK: NvmeStatus = { sct: NVME_SCT_GENERIC, sc: NVME_SC_SUCCESS, dnr: false };
/** A generic status; DNR set unless retrying could help (a data transfer error may be transient). */
export const nvmeStatus = (sc: number, dnr = sc !== NVME_SC_DATA_XFER_ERROR): NvmeStatus => ({
  sct: NVME_SCT_GENERIC,
  sc,
  dnr,
});
export const nvmeCmdStatus = (sc: number): NvmeStatus => ({ sct: NVME_SCT_CMD_SPECIFIC, sc, dnr: true });

/** The 15-bit status field of CQE dword 3 (bits 31:17): SC 7:0, SCT 10:8, DNR 14. */
export const nvmeStatusField = (s: NvmeStatus): number =>
  (s.sc & 0xff) | ((s.sct & 7) << 8) | (s.dnr ? 1 << 14 : 0);

/** The status word Linux reads (`le16_to_cpu(cqe->status) >> 1`), split back into its parts. */
export function decodeNvmeStatus(field: number): NvmeStatus {
  return { sc: field & 0xff, sct: (field >> 8) & 7, dnr: (field & (1 << 14)) !== 0 };
}
