// The `p2pmem` sysfs group of a provider (drivers/pci/p2pdma.c): `size`, `available` and `published`
// as the exact strings a read returns, and the `allocate` file's mmap (6.2+, userspace P2PDMA).
//
//   /sys/bus/pci/devices/<bdf>/p2pmem/size       "%zd\n"  gen_pool_size   (0 without a pool)
//                                    /available  "%zd\n"  gen_pool_avail
//                                    /published  "%d\n"   0 or 1
//                                    /allocate   mmap only: one contiguous pool allocation, each page
//                                                mapped with count 1 (the VMA's reference)
//
// The group exists once the provider has a pool. When the last reference to a mapped page goes
// (munmap, or the zap at unbind) the pagemap's free callback returns that one page to the pool.

import { bytes, PAGE_SIZE_N } from '../../hw/addr.js';
import type { PciFunction } from '../../hw/pci.js';
import { err, type KResult, ok } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { kvirtAddr, virtToPfn } from '../mm/direct-map.js';
import { genPoolAllocOwner, genPoolAvail, genPoolFree, genPoolSize } from '../mm/genalloc.js';
import { mmWarnOnce } from '../mm/mm.js';
import { getPage, pfnToPage, putPage, setPageCount } from '../mm/page.js';
import { percpuRefGet, percpuRefPut, percpuRefTrygetLive } from '../mm/percpu-ref.js';
import { type P2pmemMapping, p2pmemZapMapping, pciP2pdmaOf, providerProfile } from './p2pdma-provider.js';

export type P2pmemAttr = 'size' | 'available' | 'published';

/**
 * Read `/sys/bus/pci/devices/<bdf>/p2pmem/<attr>`.
 * @returns the file's contents; ENOENT when the group does not exist (no p2pdma state or no pool).
 */
export function p2pmemSysfsRead(k: Kernel, pdev: PciFunction, attr: P2pmemAttr): KResult<string> {
  const st = pciP2pdmaOf(k, pdev);
  if (st === null || !st.pool) return err('ENOENT', `${pdev.name}: no p2pmem sysfs group`);
  if (attr === 'size') return ok(`${genPoolSize(st.pool)}\n`);
  if (attr === 'available') return ok(`${genPoolAvail(st.pool)}\n`);
  return ok(`${st.published ? 1 : 0}\n`);
}

/** The part of a `vm_area_struct` the mmap handler looks at. */
export interface P2pmemVma {
  readonly lenBytes: bigint;
  /** VM_MAYSHARE: a MAP_SHARED mapping. */
  readonly shared: boolean;
  /** `vm_pgoff`. */
  readonly pgoff: number;
  /** `current->comm` for the messages. */
  readonly comm: string;
}

/**
 * `p2pmem_alloc_mmap()`: map `lenBytes` of provider memory into a process. Each page gets count 1
 * (newest warns once if a fresh page's count is not 0) held by the mapping, and one pagemap reference.
 * @returns the mapping; ENOENT when the `allocate` file does not exist (6.1, no p2pdma state or no
 *   pool, or removed at unbind); EINVAL for a private mapping or a non-zero offset (with the kernel's
 *   info line); ENOMEM when the pool has no room; ENODEV when the pagemap is being torn down.
 */
export function p2pmemAllocMmap(k: Kernel, pdev: PciFunction, vma: P2pmemVma): KResult<P2pmemMapping> {
  const st = pciP2pdmaOf(k, pdev);
  if (!providerProfile(k).allocateFile)
    return err('ENOENT', `Linux ${k.version} has no p2pmem/allocate file`);
  if (st === null || !st.pool || st.devres?.allocateRemoved)
    return err('ENOENT', `${pdev.name}: no p2pmem/allocate file`);
  if (vma.lenBytes <= 0n || vma.lenBytes % PAGE_SIZE_N !== 0n)
    throw new Error('BUG: a VMA length is a page multiple');
  if (!vma.shared) {
    k.log.devInfo(pdev, `${vma.comm}: fail, attempted private mapping`);
    return err('EINVAL', 'p2pmem mmap: private mapping');
  }
  if (vma.pgoff !== 0) {
    k.log.devInfo(pdev, `${vma.comm}: fail, attempted mapping with non-zero offset`);
    return err('EINVAL', 'p2pmem mmap: non-zero offset');
  }
  const a = genPoolAllocOwner(st.pool, bytes(vma.lenBytes));
  if (a === null) return err('ENOMEM', `${pdev.name}: no ${vma.lenBytes} contiguous bytes in the pool`);
  if (a.owner === null || !percpuRefTrygetLive(a.owner)) {
    genPoolFree(st.pool, a.addr, bytes(vma.lenBytes));
    return err('ENODEV', `${pdev.name}: the provider is going away`);
  }
  const ref = a.owner;
  const pfns: number[] = [];
  for (let off = 0n; off < vma.lenBytes; off += PAGE_SIZE_N) {
    const pfn = virtToPfn(kvirtAddr(a.addr + off));
    const page = pfnToPage(k.mm, pfn);
    if (page === null) throw new Error('BUG: p2pmem mmap: pool memory without struct pages');
    if (page.refcount !== 0) {
      mmWarnOnce(
        k.mm,
        'p2pmem_alloc_mmap',
        'WARNING: drivers/pci/p2pdma.c: p2pmem_alloc_mmap: VM_WARN_ON_ONCE_PAGE(page_ref_count(page))',
      );
    }
    setPageCount(page, 1);
    getPage(page); // vm_insert_page() takes the mapping's reference...
    percpuRefGet(ref);
    putPage(k.mm, page); // ...and the allocation's own reference is dropped.
    pfns.push(pfn);
  }
  percpuRefPut(ref);
  const m: P2pmemMapping = { pdev, pfns, live: true };
  st.devres?.mappings.add(m);
  return ok(m);
}

/** `munmap()` of an `allocate` mapping: drop each page's mapping reference (no-op if already unmapped). */
export const p2pmemMunmap = (k: Kernel, m: P2pmemMapping): void => p2pmemZapMapping(k, m);
