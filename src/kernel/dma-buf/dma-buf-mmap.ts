// Mapping a dma-buf into a process (drivers/dma-buf/dma-buf.c dma_buf_mmap) and a CPU that uses the
// mapping: the exporter's mmap op installs a fault handler; every access to a page without a pte faults;
// the handler either supplies the page (a VRAM page through the BAR, a system page) or asks the CPU to
// retry (VM_FAULT_RETRY: the buffer was locked or moving; the handler waited). When the buffer moves,
// the exporter zaps the ptes (unmap_mapping_range) and the next access faults again and restarts.
//
//   cpu access ──pte?──yes──> load/store the physical page
//                 └─no──> fault ──> exporter: trylock resv? wait for KERNEL fences? ──> pfn | RETRY | SIGBUS
//                                                   ^ retry re-executes the access ─┘
//
// The process's page table is the VMA's own map of ptes here (mm/vma.ts has no fault hook for
// drivers); the semantics are those of handle_mm_fault() with FAULT_FLAG_ALLOW_RETRY.

import { PAGE_SHIFT, PAGE_SIZE, physAddr } from '../../hw/addr.js';
import type { PhysMemoryAccessor } from '../dma/dma-types.js';
import { err, type KResult, ok } from '../errno.js';
import type { DmaBuf } from './dma-buf.js';
import { callText } from './dma-buf-call.js';
import type { KTaskOp } from './sched.js';
import { warnOn, withCall } from './world.js';

/** What the exporter's fault handler answers (VM_FAULT_NOPAGE with a pfn, VM_FAULT_RETRY, VM_FAULT_SIGBUS). */
export type VmFault =
  | { readonly kind: 'pfn'; readonly phys: bigint }
  | { readonly kind: 'retry' }
  | { readonly kind: 'sigbus' };

/** The part of a `vm_area_struct` mapping a dma-buf that the model needs. */
export interface DmaBufVma {
  readonly dmabuf: DmaBuf;
  /** `vma_pages(vma)`. */
  readonly pages: number;
  /** `vm_pgoff`: the first page of the buffer the mapping shows. */
  pgoff: number;
  /** `vm_ops->fault`, installed by the exporter's mmap op. */
  fault: ((vma: DmaBufVma, pageIndex: number) => KTaskOp<VmFault>) | null;
  /** Present ptes: page index in the mapping -> CPU physical address of the page. */
  readonly ptes: Map<number, bigint>;
  /** Counters for reports: faults taken, faults that asked for a retry, zaps. */
  readonly stats: { faults: number; retries: number; zaps: number };
}

/**
 * `dma_buf_mmap()`: map `pages` pages of `dmabuf` from page `pgoff`, through the exporter's mmap op.
 * @returns the mapping; EINVAL (WARN) without a buffer, EINVAL when the exporter has no mmap op or the
 *   range passes the buffer's end, EOVERFLOW when pgoff + pages wraps; the exporter's mmap error.
 */
export function dmaBufMmap(dmabuf: DmaBuf, pages: number, pgoff: number): KResult<DmaBufVma> {
  return withCall(dmabuf.world, callText('dma_buf_mmap', { dmabuf: dmabuf.expName, pages, pgoff }), () => {
    if (warnOn(dmabuf.world, dmabuf.released, 'dma_buf_mmap', '!dmabuf || !vma'))
      return err('EINVAL', 'released');
    if (!dmabuf.ops.mmap) return err('EINVAL', `${dmabuf.expName} cannot be mmapped`);
    const end = BigInt(pgoff) + BigInt(pages);
    if (end >= 1n << 64n) return err('EOVERFLOW', 'pgoff + vma_pages overflows');
    if (end > BigInt(dmabuf.sizeBytes) >> BigInt(PAGE_SHIFT))
      return err('EINVAL', 'mapping passes the end of the buffer');
    const vma: DmaBufVma = {
      dmabuf,
      pages,
      pgoff,
      fault: null,
      ptes: new Map(),
      stats: { faults: 0, retries: 0, zaps: 0 },
    };
    const r = dmabuf.ops.mmap(dmabuf, vma);
    return r.ok ? ok(vma) : r;
  });
}

/** `unmap_mapping_range()` of the whole mapping: every pte goes; the next access faults. */
export function dmaBufVmaZap(vma: DmaBufVma): void {
  vma.ptes.clear();
  vma.stats.zaps++;
}

/** The pte of `page`, faulting it in (and retrying as the handler asks). */
function* pteOf(vma: DmaBufVma, page: number): KTaskOp<KResult<bigint>> {
  for (;;) {
    const pte = vma.ptes.get(page);
    if (pte !== undefined) return ok(pte);
    if (vma.fault === null) return err('EFAULT', 'no fault handler (SIGBUS)');
    vma.stats.faults++;
    const f = yield* vma.fault(vma, vma.pgoff + page);
    if (f.kind === 'sigbus') return err('EFAULT', `SIGBUS at page ${page}`);
    if (f.kind === 'retry') {
      vma.stats.retries++;
      continue;
    }
    vma.ptes.set(page, f.phys);
  }
}

/**
 * A CPU load (data null) or store of `len` bytes at byte `offset` of the mapping, page by page: each
 * page without a pte faults first. Between the fault and the access nothing can intervene (the model's
 * CPU access is instantaneous), as the pte lock guarantees in the kernel.
 * @returns the bytes read (or written); EFAULT (SIGBUS) outside the mapping or when the handler refuses.
 * May sleep (faults wait for locks and moves).
 */
export function* dmaBufCpuAccess(
  vma: DmaBufVma,
  mem: PhysMemoryAccessor,
  offset: number,
  len: number,
  data: Uint8Array | null = null,
): KTaskOp<KResult<Uint8Array>> {
  if (offset < 0 || len < 0 || offset + len > vma.pages * PAGE_SIZE)
    return err('EFAULT', 'outside the mapping');
  const out = data ?? new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const at = offset + done;
    const page = Math.floor(at / PAGE_SIZE);
    const inPage = at % PAGE_SIZE;
    const n = Math.min(len - done, PAGE_SIZE - inPage);
    const pte = yield* pteOf(vma, page);
    if (!pte.ok) return pte;
    const phys = physAddr(pte.value + BigInt(inPage));
    if (data === null) out.set(mem.read(phys, n), done);
    else mem.write(phys, data.subarray(done, done + n));
    done += n;
  }
  return ok(out);
}
