// BAR0 of the NVMe controller model: the register file the host reads and writes (CAP, VS, CC, CSTS,
// AQA, ASQ, ACQ, CMBLOC, CMBSZ, CMBMSC) and the doorbells from 0x1000, with the side effects of a
// store: CC.EN brings the admin queue pair up (CSTS.RDY after the enable time) or resets every queue,
// CC.SHN completes a shutdown, CMBMSC.CRE shows the CMB registers, CMBMSC.CMSE and CBA place the CMB in
// the controller's address space. Mirrors what drivers/nvme/host/pci.c touches (nvme_pci_enable,
// nvme_enable_ctrl / nvme_disable_ctrl in core.c, nvme_map_cmb's CMBMSC write). Accesses are 32-bit
// and aligned, as the specification requires; anything else is counted and ignored.

import type { MmioHandler } from '../fabric/address-map.js';
import type { NvmeController } from './nvme.js';
import * as R from './nvme-regs.js';

/** CAP: MQES, contiguous queues required, 10 s timeout, NVM command set, 4-64 KiB pages, CMBS. */
export function nvmeCap(c: NvmeController): bigint {
  return (
    BigInt(c.mqes) |
    R.NVME_CAP_CQR |
    (20n << R.NVME_CAP_TO_SHIFT) |
    R.NVME_CAP_CSS_NVM |
    (4n << R.NVME_CAP_MPSMAX_SHIFT) |
    (c.cmb && c.cmbMsc ? R.NVME_CAP_CMBS : 0n)
  );
}

/** CMBLOC and CMBSZ as the host reads them (zero while CMBMSC.CRE is clear on a 1.4 controller). */
export function nvmeCmbRegs(c: NvmeController): { cmbloc: number; cmbsz: number } {
  const m = c.cmb;
  if (!m || (c.cmbMsc && !(c.cmbmsc & R.NVME_CMBMSC_CRE))) return { cmbloc: 0, cmbsz: 0 };
  const unit = R.nvmeCmbSizeUnit(m.szu);
  const ofst = Number(BigInt(m.offset) / unit);
  const sz = Number(BigInt(m.size) / unit);
  return {
    cmbloc: (m.bar.index | (ofst << R.NVME_CMBLOC_OFST_SHIFT)) >>> 0,
    cmbsz: (m.flags | (m.szu << R.NVME_CMBSZ_SZU_SHIFT) | (sz << R.NVME_CMBSZ_SZ_SHIFT)) >>> 0,
  };
}

const lo = (v: bigint): number => Number(v & 0xffffffffn);
const hi = (v: bigint): number => Number((v >> 32n) & 0xffffffffn);

function readDword(c: NvmeController, off: number): number {
  switch (off) {
    case R.NVME_REG_CAP:
      return lo(nvmeCap(c));
    case R.NVME_REG_CAP + 4:
      return hi(nvmeCap(c));
    case R.NVME_REG_VS:
      return 0x00010400;
    case R.NVME_REG_CC:
      return c.cc;
    case R.NVME_REG_CSTS:
      return c.csts;
    case R.NVME_REG_AQA:
      return c.aqa;
    case R.NVME_REG_ASQ:
      return lo(c.asq);
    case R.NVME_REG_ASQ + 4:
      return hi(c.asq);
    case R.NVME_REG_ACQ:
      return lo(c.acq);
    case R.NVME_REG_ACQ + 4:
      return hi(c.acq);
    case R.NVME_REG_CMBLOC:
      return nvmeCmbRegs(c).cmbloc;
    case R.NVME_REG_CMBSZ:
      return nvmeCmbRegs(c).cmbsz;
    case R.NVME_REG_CMBMSC:
      return lo(c.cmbmsc);
    case R.NVME_REG_CMBMSC + 4:
      return hi(c.cmbmsc);
    default:
      return 0; // reserved registers and the write-only doorbells read as zero
  }
}

function writeDword(c: NvmeController, off: number, v: number): void {
  const setLo = (old: bigint): bigint => (old & ~0xffffffffn) | BigInt(v >>> 0);
  const setHi = (old: bigint): bigint => (old & 0xffffffffn) | (BigInt(v >>> 0) << 32n);
  if (off >= R.NVME_REG_DBS) c.doorbell(off, v >>> 0);
  else if (off === R.NVME_REG_CC) setCc(c, v >>> 0);
  else if (off === R.NVME_REG_AQA) c.aqa = v >>> 0;
  else if (off === R.NVME_REG_ASQ) c.asq = setLo(c.asq);
  else if (off === R.NVME_REG_ASQ + 4) c.asq = setHi(c.asq);
  else if (off === R.NVME_REG_ACQ) c.acq = setLo(c.acq);
  else if (off === R.NVME_REG_ACQ + 4) c.acq = setHi(c.acq);
  else if (off === R.NVME_REG_CMBMSC && c.cmbMsc) c.cmbmsc = setLo(c.cmbmsc);
  else if (off === R.NVME_REG_CMBMSC + 4 && c.cmbMsc) c.cmbmsc = setHi(c.cmbmsc);
}

/** CC: enabling creates the admin queues from AQA/ASQ/ACQ; disabling resets every queue. */
function setCc(c: NvmeController, v: number): void {
  const was = c.cc & R.NVME_CC_ENABLE;
  c.cc = v;
  const clock = c.fab.clock;
  if (v & R.NVME_CC_SHN_MASK) clock.schedule(c.timing.enableNs, () => (c.csts |= R.NVME_CSTS_SHST_CMPLT));
  if (!was && v & R.NVME_CC_ENABLE) {
    const gen = c.generation;
    clock.schedule(c.timing.enableNs, () => gen === c.generation && enable(c));
  } else if (was && !(v & R.NVME_CC_ENABLE)) c.reset();
}

/** CC.EN 0 -> 1: check the admin queue setup, create the admin pair, set CSTS.RDY (else CFS). */
function enable(c: NvmeController): void {
  const mpsCode = (c.cc & R.NVME_CC_MPS_MASK) >> R.NVME_CC_MPS_SHIFT;
  const asqs = (c.aqa & 0xfff) + 1;
  const acqs = ((c.aqa >>> 16) & 0xfff) + 1;
  const mask = BigInt(c.mps - 1);
  if (mpsCode > 4 || asqs < 2 || acqs < 2 || c.asq & mask || c.acq & mask) {
    c.csts |= R.NVME_CSTS_CFS;
    return;
  }
  c.cqs.set(0, {
    qid: 0,
    base: c.acq,
    entries: acqs,
    ien: true,
    iv: 0,
    head: 0,
    tail: 0,
    phase: 1,
    waiting: [],
  });
  c.sqs.set(0, { qid: 0, base: c.asq, entries: asqs, cqid: 0, head: 0, tail: 0, fetching: false });
  c.csts = R.NVME_CSTS_RDY;
}

/** The MMIO handler of BAR0 for controller `c`. */
export function nvmeBar0(c: NvmeController): MmioHandler {
  return {
    name: `${c.fn.name} nvme registers`,
    read: (offset, dst) => {
      for (let i = 0; i < dst.length; i++) {
        const at = offset + i;
        dst[i] = (readDword(c, at & ~3) >>> (8 * (at & 3))) & 0xff;
      }
    },
    write: (offset, src) => {
      if (offset & 3 || src.length % 4 !== 0) {
        c.stats.badAccesses++;
        return;
      }
      const dv = new DataView(src.buffer, src.byteOffset, src.length);
      for (let i = 0; i < src.length; i += 4) writeDword(c, offset + i, dv.getUint32(i, true));
    },
  };
}
