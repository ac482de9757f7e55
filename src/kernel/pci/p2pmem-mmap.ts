// The `p2pmem/allocate` file of a P2PDMA provider as a process maps it (userspace P2PDMA, 6.2+):
// open /sys/bus/pci/devices/<bdf>/p2pmem/allocate, mmap() it MAP_SHARED at offset 0, and the VMA is
// filled with the provider's pages (drivers/pci/p2pdma.c `p2pmem_alloc_mmap`, modelled in
// p2pdma-sysfs.ts). This file joins that to the process address space of src/kernel/mm/vma.ts:
//
//   doMmap(mm, len, PROT_READ|PROT_WRITE, MAP_SHARED, allocateFile)
//     -> vma [start, start+len)  -> p2pmemAllocMmap(): one contiguous pool chunk, count 1 per page
//     -> ptes: start + i*4K -> pfn_i (the VMA holds each page's reference), VM_MIXEDMAP
//   munmap (all or part) -> each page's last reference -> p2pdma_page_free -> back to the pool,
//                           one page at a time (after any GUP pin of it is dropped too)
//   driver unbind -> unmap_mapping_range: ptes zapped, later faults SIGBUS (-EFAULT)
//
// Partial munmap keeps the provider's bookkeeping exact: the pages unmapped are put, and the
// mapping record of p2pdma-provider.ts is replaced by one per remaining VMA piece.

import { PAGE_SHIFT } from '../../hw/addr.js';
import type { PciFunction } from '../../hw/pci.js';
import { err, type KResult, ok } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { pfnToPage } from '../mm/page.js';
import { releasePage } from '../mm/page-alloc.js';
import {
  type MmapFile,
  type MmStruct,
  VM_DONTEXPAND,
  VM_MAYSHARE,
  VM_MIXEDMAP,
  type Vma,
  type VmOps,
} from '../mm/vma.js';
import { type P2pmemMapping, pciP2pdmaOf, providerProfile } from './p2pdma-provider.js';
import { p2pmemAllocMmap, p2pmemMunmap } from './p2pdma-sysfs.js';

const upn = (a: bigint): number => Number(a >> BigInt(PAGE_SHIFT));

/** The mapping record a VMA piece holds. */
const mappingOf = (vma: Vma): P2pmemMapping => vma.priv as P2pmemMapping;

/** Replace `old` by a record holding exactly the pfns still mapped by each VMA piece that used it. */
function rebuildMappings(k: Kernel, mm: MmStruct, old: P2pmemMapping, removed: Vma): void {
  const devres = pciP2pdmaOf(k, old.pdev)?.devres;
  old.live = false;
  devres?.mappings.delete(old);
  for (const v of mm.vmas) {
    if (v === removed || v.priv !== old) continue;
    const pfns: number[] = [];
    for (let a = v.start as bigint; a < v.end; a += 4096n) {
      const pte = mm.pt.get(upn(a));
      if (pte) pfns.push(pte.pfn);
    }
    const m: P2pmemMapping = { pdev: old.pdev, pfns, live: true };
    devres?.mappings.add(m);
    v.priv = m;
  }
}

function vmOps(k: Kernel): VmOps {
  return {
    revoked: (vma) => !mappingOf(vma).live,
    zap(vma, start, end) {
      const m = mappingOf(vma);
      if (!m.live) return true; // already zapped by the unbind: no references left to drop
      const whole = vma.mm.vmas.every((v) => v === vma || v.priv !== m);
      if (whole && start === vma.start && end === vma.end) {
        p2pmemMunmap(k, m);
        return true;
      }
      for (let a = start as bigint; a < end; a += 4096n) {
        const pte = vma.mm.pt.get(upn(a));
        const page = pte ? pfnToPage(k.mm, pte.pfn) : null;
        if (page) releasePage(k.mm, page);
      }
      // The ptes of [start, end) are dropped by the caller right after; rebuild from what remains.
      for (let a = start as bigint; a < end; a += 4096n) vma.mm.pt.delete(upn(a));
      rebuildMappings(k, vma.mm, m, vma);
      return true;
    },
  };
}

/**
 * The `allocate` attribute of `pdev`'s p2pmem group, opened read-write (mode 0660), as a mappable
 * file. Its mmap runs p2pmem_alloc_mmap() and errors exactly as p2pdma-sysfs.ts documents:
 * ENOENT (no such file: 6.1, no pool, removed at unbind), EINVAL (private mapping, non-zero offset),
 * ENODEV (no p2pdma state, provider going away), ENOMEM (no contiguous room in the pool).
 */
export function p2pmemAllocateFile(k: Kernel, pdev: PciFunction): MmapFile {
  return {
    name: `/sys/bus/pci/devices/${pdev.name}/p2pmem/allocate`,
    writable: true,
    mmap(mm: MmStruct, vma: Vma): KResult<void> {
      const r = p2pmemAllocMmap(k, pdev, {
        lenBytes: vma.end - vma.start,
        shared: (vma.flags & VM_MAYSHARE) !== 0,
        pgoff: vma.pgoff,
        comm: mm.comm,
      });
      if (!r.ok) return r;
      const m = r.value;
      if (m.pfns.length !== upn(vma.end - vma.start))
        throw new Error('BUG: p2pmem mmap filled a different page count');
      // vm_insert_page() per page (the references were taken by p2pmemAllocMmap()).
      vma.flags |= VM_MIXEDMAP | VM_DONTEXPAND;
      m.pfns.forEach((pfn, i) => {
        mm.pt.set(upn(vma.start) + i, { pfn, writable: true });
        mm.rssPages++;
      });
      vma.priv = m;
      vma.ops = vmOps(k);
      return ok(undefined);
    },
  };
}

/**
 * Check the precondition of opening the file: it exists only on 6.2+ kernels once the provider has
 * a pool. @returns ENOENT when `open()` would fail.
 */
export function p2pmemAllocateOpen(k: Kernel, pdev: PciFunction): KResult<MmapFile> {
  const st = pciP2pdmaOf(k, pdev);
  if (!providerProfile(k).allocateFile)
    return err('ENOENT', `Linux ${k.version} has no p2pmem/allocate file (userspace P2PDMA is 6.2+)`);
  if (st === null || !st.pool || st.devres?.allocateRemoved)
    return err('ENOENT', `${pdev.name}: no p2pmem/allocate file`);
  return ok(p2pmemAllocateFile(k, pdev));
}
