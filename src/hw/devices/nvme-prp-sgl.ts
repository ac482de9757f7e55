// How an NVMe controller turns a command's data pointer into the list of memory pieces to transfer:
// PRP entries and PRP lists, or SGL descriptors and segments. List pages and segments are fetched by
// the controller itself (DMA reads through the fabric, or its own CMB). Mirrors the controller side
// of what drivers/nvme/host/pci.c builds (nvme_pci_setup_prps, nvme_pci_setup_sgls) and what
// drivers/nvme/target/pci-epf.c parses, with the NVM Express Base Specification's rules:
//
//   PRP (page size mps = 4 KiB << CC.MPS)
//     PRP1: bits 1:0 zero (else PRP Offset Invalid); may start inside a page
//     fits in PRP1's page ............................ one piece
//     fits in that page + one more ................... PRP2 is the second page (offset must be 0)
//     longer ......................................... PRP2 points to a PRP list (it may start inside
//       a page); each list page's last entry points to the next list page when more entries remain;
//       every data entry starts a page (offset 0, else PRP Offset Invalid)
//   SGL (PSDT 01b/10b)
//     SGL1 in the command: Data Block (one piece), or Segment / Last Segment pointing to a list of
//     16-byte descriptors; in a Segment's list only the last descriptor may point on (elsewhere:
//     Invalid Number of SGL Descriptors), a Last Segment's list holds data only (else Invalid SGL Last
//     Segment); other types are SGL Descriptor Type Invalid; the data must add up to the transfer
//     exactly (else Data SGL Length Invalid); a list that cannot be fetched is a Data Transfer Error.

import { type Await, type DevTask, wait } from './device-task.js';
import {
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_SGL_INVALID_COUNT,
  NVME_SC_SGL_INVALID_DATA,
  NVME_SC_SGL_INVALID_LAST,
  NVME_SC_SGL_INVALID_TYPE,
  NVME_SGL_DESC_BYTES,
  NVME_SGL_FMT_ADDRESS,
  NVME_SGL_FMT_DATA_DESC,
  NVME_SGL_FMT_LAST_SEG_DESC,
  NVME_SGL_FMT_SEG_DESC,
  type NvmeStatus,
  nvmeStatus,
} from './nvme-regs.js';

export interface DataSeg {
  readonly addr: bigint;
  readonly len: number;
}

export type DptrResult =
  | { readonly ok: true; readonly segs: readonly DataSeg[] }
  | { readonly ok: false; readonly status: NvmeStatus };

/** Reads memory the controller can reach (host memory by DMA, or its own CMB); null when it failed. */
export type ListFetch = (addr: bigint, len: number) => Await<Uint8Array | null>;

const fail = (sc: number): DptrResult => ({ ok: false, status: nvmeStatus(sc) });

/** Append a piece, merging it into the previous one when they are contiguous. */
function pushSeg(segs: DataSeg[], addr: bigint, len: number): void {
  const last = segs[segs.length - 1];
  if (last && last.addr + BigInt(last.len) === addr)
    segs[segs.length - 1] = { addr: last.addr, len: last.len + len };
  else if (len > 0) segs.push({ addr, len });
}

const u64 = (b: Uint8Array, o: number): bigint =>
  new DataView(b.buffer, b.byteOffset, b.length).getBigUint64(o, true);

/**
 * Data pieces of a PRP data pointer for a transfer of `len` bytes with memory page size `mps`.
 * @returns the pieces, or a status: PRP Offset Invalid (0x13), Data Transfer Error (0x04) when a list
 *   page cannot be fetched.
 */
export function* nvmePrpSegments(
  fetch: ListFetch,
  prp1: bigint,
  prp2: bigint,
  len: number,
  mps: number,
): DevTask<DptrResult> {
  const mask = BigInt(mps - 1);
  if (prp1 & 3n) return fail(NVME_SC_PRP_INVALID_OFFSET);
  const segs: DataSeg[] = [];
  const first = Math.min(len, mps - Number(prp1 & mask));
  pushSeg(segs, prp1, first);
  let rem = len - first;
  if (rem === 0) return { ok: true, segs };
  if (rem <= mps) {
    if (prp2 & mask) return fail(NVME_SC_PRP_INVALID_OFFSET);
    pushSeg(segs, prp2, rem);
    return { ok: true, segs };
  }
  let list = prp2;
  let need = Math.ceil(rem / mps);
  for (;;) {
    if (list & 3n) return fail(NVME_SC_PRP_INVALID_OFFSET);
    const avail = Math.floor((mps - Number(list & mask)) / 8);
    if (avail === 0) return fail(NVME_SC_PRP_INVALID_OFFSET);
    const take = Math.min(need, avail);
    const raw = yield* wait(fetch(list, take * 8));
    if (raw === null) return fail(NVME_SC_DATA_XFER_ERROR);
    const dataEntries = need <= avail ? take : take - 1;
    for (let i = 0; i < dataEntries; i++) {
      const e = u64(raw, i * 8);
      if (e & mask) return fail(NVME_SC_PRP_INVALID_OFFSET);
      const n = Math.min(mps, rem);
      pushSeg(segs, e, n);
      rem -= n;
    }
    need -= dataEntries;
    if (need === 0) return { ok: true, segs };
    list = u64(raw, (take - 1) * 8);
  }
}

interface SglDesc {
  readonly addr: bigint;
  readonly len: number;
  readonly type: number;
  readonly subtype: number;
}

function decodeSgl(b: Uint8Array, o: number): SglDesc {
  const dv = new DataView(b.buffer, b.byteOffset + o, NVME_SGL_DESC_BYTES);
  const id = dv.getUint8(15);
  return { addr: dv.getBigUint64(0, true), len: dv.getUint32(8, true), type: id >> 4, subtype: id & 0xf };
}

/** Longest chain of SGL segments followed before the command is failed (a loop in host memory). */
export const MAX_SGL_SEGMENTS = 4096;

/**
 * Data pieces of an SGL data pointer (`sgl1`: the command's 16-byte SGL1) for `len` bytes.
 * @returns the pieces, or a status: SGL Descriptor Type Invalid (0x11), Invalid Number of SGL
 *   Descriptors (0x0e), Invalid SGL Last Segment (0x0d), Data SGL Length Invalid (0x0f), Data
 *   Transfer Error (0x04) when a segment cannot be fetched.
 */
export function* nvmeSglSegments(fetch: ListFetch, sgl1: Uint8Array, len: number): DevTask<DptrResult> {
  const segs: DataSeg[] = [];
  let total = 0;
  const data = (d: SglDesc): boolean => {
    if (d.subtype !== NVME_SGL_FMT_ADDRESS) return false;
    pushSeg(segs, d.addr, d.len);
    total += d.len;
    return true;
  };
  let cur: SglDesc | null = decodeSgl(sgl1, 0);
  for (let hops = 0; cur !== null; hops++) {
    if (cur.type === NVME_SGL_FMT_DATA_DESC) {
      if (!data(cur)) return fail(NVME_SC_SGL_INVALID_TYPE);
      break;
    }
    const last = cur.type === NVME_SGL_FMT_LAST_SEG_DESC;
    if ((!last && cur.type !== NVME_SGL_FMT_SEG_DESC) || cur.subtype !== NVME_SGL_FMT_ADDRESS)
      return fail(NVME_SC_SGL_INVALID_TYPE);
    if (hops >= MAX_SGL_SEGMENTS) return fail(NVME_SC_SGL_INVALID_LAST);
    if (cur.len === 0 || cur.len % NVME_SGL_DESC_BYTES !== 0) return fail(NVME_SC_SGL_INVALID_COUNT);
    const raw = yield* wait(fetch(cur.addr, cur.len));
    if (raw === null) return fail(NVME_SC_DATA_XFER_ERROR);
    const count = cur.len / NVME_SGL_DESC_BYTES;
    let next: SglDesc | null = null;
    for (let i = 0; i < count; i++) {
      const d = decodeSgl(raw, i * NVME_SGL_DESC_BYTES);
      if (d.type === NVME_SGL_FMT_DATA_DESC) {
        if (!data(d)) return fail(NVME_SC_SGL_INVALID_TYPE);
      } else if (d.type === NVME_SGL_FMT_SEG_DESC || d.type === NVME_SGL_FMT_LAST_SEG_DESC) {
        if (last) return fail(NVME_SC_SGL_INVALID_LAST);
        if (i !== count - 1) return fail(NVME_SC_SGL_INVALID_COUNT);
        next = d;
      } else return fail(NVME_SC_SGL_INVALID_TYPE);
    }
    if (!last && next === null) return fail(NVME_SC_SGL_INVALID_LAST);
    cur = next;
  }
  if (total !== len) return fail(NVME_SC_SGL_INVALID_DATA);
  return { ok: true, segs };
}
