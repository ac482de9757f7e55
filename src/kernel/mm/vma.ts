// A process address space (`struct mm_struct` with its `vm_area_struct`s and page table), reduced to
// what userspace P2PDMA needs: mmap() of anonymous memory and of files whose mmap op inserts pages
// (the p2pmem `allocate` file), page faults on anonymous memory, vm_insert_page(), munmap(), and the
// page-table walk GUP does. Mirrors mm/mmap.c (do_mmap, get_unmapped_area top-down), mm/memory.c
// (vm_insert_page, zap_pte_range, do_anonymous_page) and mm/vma.c (do_vmi_munmap with VMA splits).
//
//   0x0000_7fff_ffff_f000  TASK_SIZE
//   0x0000_7f00_0000_0000  mmap_base: mappings are placed top-down below it
//        [ vma ][ vma ]      each VMA: [start, end), vm_flags, pgoff, file and ops
//   page table: user page number -> pte { pfn, writable }   (one level; the kernel has four)
//
// User addresses are their own branded bigint so a user pointer is never passed where a physical or
// kernel address is expected.

import { PAGE_SHIFT, PAGE_SIZE_N, physAddr } from '../../hw/addr.js';
import type { PhysMemoryAccessor } from '../dma/dma-types.js';
import { err, type KResult, ok } from '../errno.js';
import type { MmState } from './mm.js';
import { getPage, type Page, pfnToPage } from './page.js';
import { allocPages, releasePage } from './page-alloc.js';

declare const userBrand: unique symbol;
/** A user virtual address (`unsigned long` / `void __user *`). */
export type UserAddr = bigint & { readonly [userBrand]: 'UserAddr' };
export const userAddr = (v: bigint | number): UserAddr => BigInt.asUintN(64, BigInt(v)) as UserAddr;

// vm_flags (include/linux/mm.h).
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_PFNMAP = 0x400;
export const VM_IO = 0x4000;
export const VM_DONTEXPAND = 0x40000;
export const VM_MIXEDMAP = 0x1000_0000;

// mmap() prot and flags (include/uapi/asm-generic/mman-common.h).
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_TYPE = 0x0f;
export const MAP_ANONYMOUS = 0x20;

/** x86-64 4-level `TASK_SIZE_MAX`: (1 << 47) - PAGE_SIZE. */
export const TASK_SIZE = userAddr((1n << 47n) - PAGE_SIZE_N);
/** The top of the mmap area (the kernel randomises it below the stack; fixed here). */
export const MMAP_BASE = userAddr(0x7f00_0000_0000n);

/** The operations a mapping's owner supplies (`vm_operations_struct`), the part the model uses. */
export interface VmOps {
  /** `.close`: the VMA (or a piece of it) goes away. */
  readonly close?: ((vma: Vma) => void) | undefined;
  /**
   * Called before ptes in [start, end) are zapped: the owner takes over dropping the page references
   * (returns true), or lets the generic zap put each page (returns false or is absent).
   */
  readonly zap?: ((vma: Vma, start: UserAddr, end: UserAddr) => boolean) | undefined;
  /**
   * True once the owner has zapped the mapping's ptes behind the VMA's back (unmap_mapping_range at
   * driver unbind): the ptes are then gone and a fault is SIGBUS.
   */
  readonly revoked?: ((vma: Vma) => boolean) | undefined;
}

/** An open file that can be mapped (`file->f_op->mmap`). */
export interface MmapFile {
  /** Path for /proc/<pid>/maps. */
  readonly name: string;
  /** Was the file opened for writing (FMODE_WRITE)? Shared writable mappings need it. */
  readonly writable: boolean;
  /** The driver's mmap: fill the VMA (insert pages, set ops). The VMA is removed if this fails. */
  mmap(mm: MmStruct, vma: Vma): KResult<void>;
}

/** `struct vm_area_struct`: [start, end) with flags. */
export interface Vma {
  readonly mm: MmStruct;
  start: UserAddr;
  end: UserAddr;
  flags: number;
  /** `vm_pgoff`: offset into the file in pages. */
  pgoff: number;
  readonly file: MmapFile | null;
  ops: VmOps | null;
  /** Owner data (`vm_private_data`). */
  priv: unknown;
}

/** A present pte. */
export interface Pte {
  readonly pfn: number;
  readonly writable: boolean;
}

/** `struct mm_struct`: the VMAs, sorted by start, and the page table. */
export interface MmStruct {
  /** The kernel's memory-management state the pages belong to. */
  readonly kmm: MmState;
  /** `current->comm` of the process. */
  readonly comm: string;
  readonly vmas: Vma[];
  /** User page number -> pte. */
  readonly pt: Map<number, Pte>;
  /** Bytes of memory, to zero new anonymous pages and for copy_{to,from}_user; null skips zeroing. */
  readonly mem: PhysMemoryAccessor | null;
  /** Pages currently mapped (rss). */
  rssPages: number;
}

const upn = (a: bigint): number => Number(a >> BigInt(PAGE_SHIFT));
const pageAlign = (v: bigint): bigint => (v + PAGE_SIZE_N - 1n) & ~(PAGE_SIZE_N - 1n);

/** `mm_alloc()`: an empty address space for a process named `comm`. */
export const mmAlloc = (kmm: MmState, comm: string, mem: PhysMemoryAccessor | null = null): MmStruct => ({
  kmm,
  comm,
  vmas: [],
  pt: new Map(),
  mem,
  rssPages: 0,
});

/** `find_vma()`: the first VMA ending above `addr` (it may start above `addr` too). */
export function findVma(mm: MmStruct, addr: bigint): Vma | null {
  for (const v of mm.vmas) if (v.end > addr) return v;
  return null;
}

/** `vma_lookup()`: the VMA containing `addr`, or null. */
export function vmaLookup(mm: MmStruct, addr: bigint): Vma | null {
  const v = findVma(mm, addr);
  return v !== null && v.start <= addr ? v : null;
}

/**
 * `get_unmapped_area()` top-down (`arch_get_unmapped_area_topdown`): the highest gap of `len` bytes
 * below mmap_base. @returns the address, or ENOMEM when no gap is large enough.
 */
export function getUnmappedArea(mm: MmStruct, len: bigint): KResult<UserAddr> {
  let top: bigint = MMAP_BASE;
  for (let i = mm.vmas.length - 1; i >= 0; i--) {
    const v = mm.vmas[i]!;
    if (v.start >= top) continue;
    if (v.end <= top - len) return ok(userAddr(top - len));
    top = v.start;
  }
  return top - len >= PAGE_SIZE_N ? ok(userAddr(top - len)) : err('ENOMEM', 'no room in the address space');
}

function insertVma(mm: MmStruct, v: Vma): void {
  let i = 0;
  while (i < mm.vmas.length && mm.vmas[i]!.start < v.start) i++;
  mm.vmas.splice(i, 0, v);
}

/**
 * `do_mmap()` with addr 0 (the kernel picks the address): map `len` bytes of `file` at page offset
 * `pgoff`, or anonymous private memory when `file` is null. Anonymous pages are faulted in on access.
 * @returns the address; errors in the kernel's order: EINVAL (len 0, or neither MAP_SHARED nor
 *   MAP_PRIVATE, or MAP_ANONYMOUS|MAP_SHARED, which needs shmem the model does not have),
 *   ENOMEM (len overflows or no room), EACCES (shared writable map of a file not open for writing),
 *   or the file's mmap error (the VMA is then unmapped again).
 */
export function doMmap(
  mm: MmStruct,
  len: bigint,
  prot: number,
  flags: number,
  file: MmapFile | null,
  pgoff = 0,
): KResult<UserAddr> {
  if (len === 0n) return err('EINVAL', 'mmap: length 0');
  const size = pageAlign(len);
  if (size === 0n || size > TASK_SIZE) return err('ENOMEM', 'mmap: length overflows');
  const type = flags & MAP_TYPE;
  if (type !== MAP_SHARED && type !== MAP_PRIVATE)
    return err('EINVAL', 'mmap: neither MAP_SHARED nor MAP_PRIVATE');
  if (file === null && (flags & MAP_ANONYMOUS) === 0) return err('EINVAL', 'mmap: no file and not anonymous');
  if (file === null && type === MAP_SHARED)
    return err('EINVAL', 'mmap: shared anonymous memory (shmem) is not modelled');
  let vmFlags = (prot & (PROT_READ | PROT_WRITE)) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  if (type === MAP_SHARED) {
    if (file !== null && (prot & PROT_WRITE) !== 0 && !file.writable)
      return err('EACCES', 'mmap: shared writable mapping of a file opened read-only');
    vmFlags |= VM_MAYSHARE | (file?.writable ? VM_SHARED : 0);
    if (file !== null && !file.writable) vmFlags &= ~VM_MAYWRITE;
  }
  const at = getUnmappedArea(mm, size);
  if (!at.ok) return at;
  const vma: Vma = {
    mm,
    start: at.value,
    end: userAddr(at.value + size),
    flags: vmFlags,
    pgoff,
    file,
    ops: null,
    priv: null,
  };
  insertVma(mm, vma);
  if (file !== null) {
    const r = file.mmap(mm, vma);
    if (!r.ok) {
      zapRange(mm, vma, vma.start, vma.end);
      mm.vmas.splice(mm.vmas.indexOf(vma), 1);
      return r;
    }
  }
  return ok(vma.start);
}

/**
 * `vm_insert_page()`: map `page` at `addr` of a VMA, taking a reference for the pte; sets
 * VM_MIXEDMAP. @returns EFAULT outside the VMA, EINVAL for a VM_PFNMAP VMA, EBUSY when a pte is
 * already present.
 */
export function vmInsertPage(vma: Vma, addr: UserAddr, page: Page): KResult<void> {
  if (addr < vma.start || addr >= vma.end) return err('EFAULT', 'vm_insert_page: address outside the VMA');
  if ((vma.flags & VM_PFNMAP) !== 0) return err('EINVAL', 'vm_insert_page: VM_PFNMAP VMA');
  vma.flags |= VM_MIXEDMAP;
  const n = upn(addr);
  if (vma.mm.pt.has(n)) return err('EBUSY', 'vm_insert_page: pte already present');
  getPage(page);
  vma.mm.pt.set(n, { pfn: page.pfn, writable: (vma.flags & VM_WRITE) !== 0 });
  vma.mm.rssPages++;
  return ok(undefined);
}

/**
 * The pte of `addr` in `vma`, or null when none is present (`follow_pte()`). A mapping its owner
 * revoked loses its ptes here (the model applies unmap_mapping_range lazily).
 */
export function followPte(vma: Vma, addr: bigint): Pte | null {
  const mm = vma.mm;
  if (vma.ops?.revoked?.(vma)) {
    for (let a = vma.start as bigint; a < vma.end; a += PAGE_SIZE_N) if (mm.pt.delete(upn(a))) mm.rssPages--;
    return null;
  }
  return mm.pt.get(upn(addr)) ?? null;
}

/**
 * `handle_mm_fault()` for a not-present pte: anonymous memory gets a zeroed page
 * (`do_anonymous_page()`); a file mapping without a fault handler (the p2pmem file) is SIGBUS.
 * Preconditions: `addr` is inside `vma` and access permissions were checked by the caller.
 * @returns the new pte; EFAULT (VM_FAULT_SIGBUS) for a mapping that cannot fault, ENOMEM (VM_FAULT_OOM).
 */
export function handleMmFault(mm: MmStruct, vma: Vma, addr: bigint): KResult<Pte> {
  if (vma.file !== null) return err('EFAULT', 'fault on a file mapping without a fault handler (SIGBUS)');
  const pfn = allocPages(mm.kmm, 1);
  if (pfn === null) return err('ENOMEM', 'out of memory (VM_FAULT_OOM)');
  if (mm.mem) mm.mem.write(physAddr(BigInt(pfn) << BigInt(PAGE_SHIFT)), new Uint8Array(Number(PAGE_SIZE_N)));
  const pte: Pte = { pfn, writable: (vma.flags & VM_WRITE) !== 0 };
  mm.pt.set(upn(addr), pte);
  mm.rssPages++;
  return ok(pte);
}

/** zap_pte_range(): drop the ptes of [start, end) and the page references they hold. */
function zapRange(mm: MmStruct, vma: Vma, start: UserAddr, end: UserAddr): void {
  const owned = vma.ops?.zap?.(vma, start, end) ?? false;
  for (let a = start as bigint; a < end; a += PAGE_SIZE_N) {
    const n = upn(a);
    const pte = mm.pt.get(n);
    if (!pte) continue;
    mm.pt.delete(n);
    mm.rssPages--;
    if (owned) continue;
    const page = pfnToPage(mm.kmm, pte.pfn);
    if (page === null) throw new Error('BUG: a pte maps a pfn without a struct page');
    releasePage(mm.kmm, page);
  }
}

/** Split `vma` at `at`: the lower part keeps the object, a new VMA gets [at, end). */
function splitVma(mm: MmStruct, vma: Vma, at: UserAddr): Vma {
  const upper: Vma = { ...vma, start: at, pgoff: vma.pgoff + upn(at - vma.start) };
  vma.end = at;
  insertVma(mm, upper);
  return upper;
}

/**
 * `munmap()` (`do_vmi_munmap`): unmap [addr, addr + len), splitting VMAs at the edges; each removed
 * piece's pages are zapped and its `close` op runs.
 * @returns EINVAL for an unaligned address, a zero length or a range beyond TASK_SIZE; unmapping a
 *   range with no VMA in it succeeds.
 */
export function doMunmap(mm: MmStruct, addr: UserAddr, len: bigint): KResult<void> {
  if ((addr & (PAGE_SIZE_N - 1n)) !== 0n) return err('EINVAL', 'munmap: unaligned address');
  const size = pageAlign(len);
  if (len === 0n || addr + size > TASK_SIZE) return err('EINVAL', 'munmap: bad length');
  const end = userAddr(addr + size);
  for (const v of [...mm.vmas]) {
    if (v.end <= addr || v.start >= end) continue;
    let piece = v;
    if (piece.start < addr) piece = splitVma(mm, piece, addr);
    if (piece.end > end) splitVma(mm, piece, end);
    zapRange(mm, piece, piece.start, piece.end);
    mm.vmas.splice(mm.vmas.indexOf(piece), 1);
    piece.ops?.close?.(piece);
  }
  return ok(undefined);
}

/** exit_mmap(): unmap everything. */
export function exitMmap(mm: MmStruct): void {
  for (const v of [...mm.vmas]) doMunmap(mm, v.start, v.end - v.start);
}

/** Walk [addr, addr + len) page by page, faulting anonymous pages in; calls `f` per piece. */
function userPieces(
  mm: MmStruct,
  addr: UserAddr,
  len: number,
  write: boolean,
  f: (phys: bigint, off: number, n: number) => void,
): KResult<void> {
  let done = 0;
  while (done < len) {
    const a = addr + BigInt(done);
    const vma = vmaLookup(mm, a);
    if (vma === null) return err('EFAULT', `no mapping at 0x${a.toString(16)}`);
    if ((vma.flags & (write ? VM_WRITE : VM_READ)) === 0) return err('EFAULT', 'access not permitted');
    let pte = followPte(vma, a);
    if (pte === null) {
      const r = handleMmFault(mm, vma, a);
      if (!r.ok) return r;
      pte = r.value;
    }
    const inPage = Number(a & (PAGE_SIZE_N - 1n));
    const n = Math.min(len - done, Number(PAGE_SIZE_N) - inPage);
    f((BigInt(pte.pfn) << BigInt(PAGE_SHIFT)) + BigInt(inPage), done, n);
    done += n;
  }
  return ok(undefined);
}

/**
 * `copy_to_user()`: store `data` at user address `addr` (faulting anonymous pages in).
 * @returns EFAULT when a byte is unmapped or not writable (nothing is rolled back, as in the kernel
 *   the copy stops there).
 */
export function copyToUser(mm: MmStruct, addr: UserAddr, data: Uint8Array): KResult<void> {
  const mem = mm.mem;
  if (mem === null) throw new Error('BUG: copy_to_user on an address space without memory');
  return userPieces(mm, addr, data.length, true, (phys, off, n) =>
    mem.write(physAddr(phys), data.subarray(off, off + n)),
  );
}

/** `copy_from_user()`: read `len` bytes at user address `addr`. @returns EFAULT when unmapped. */
export function copyFromUser(mm: MmStruct, addr: UserAddr, len: number): KResult<Uint8Array> {
  const mem = mm.mem;
  if (mem === null) throw new Error('BUG: copy_from_user on an address space without memory');
  const out = new Uint8Array(len);
  const r = userPieces(mm, addr, len, false, (phys, off, n) => out.set(mem.read(physAddr(phys), n), off));
  return r.ok ? ok(out) : r;
}
