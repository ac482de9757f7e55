import { describe, expect, it } from 'vitest';
import { bytes, GiB, physAddr } from '../../hw/addr.js';
import { sparsePhysMemory } from '../dma/dma-context.js';
import { err, ok } from '../errno.js';
import { bootKernel } from '../kernel.js';
import { p2pMachine } from '../pci/p2pdma-testbed.js';
import { pfnToPage } from './page.js';
import { allocatedPages, allocPages, freePages } from './page-alloc.js';
import {
  copyFromUser,
  copyToUser,
  doMmap,
  doMunmap,
  exitMmap,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  MMAP_BASE,
  type MmapFile,
  mmAlloc,
  PROT_READ,
  PROT_WRITE,
  userAddr,
  VM_MIXEDMAP,
  vmaLookup,
  vmInsertPage,
} from './vma.js';

const setup = () => {
  const k = bootKernel(p2pMachine(), { version: 'newest' });
  const mm = mmAlloc(k.mm, 'p2ptest', sparsePhysMemory());
  return { k, mm };
};
const E = (errno: string) => ({ ok: false, errno });
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const RW = PROT_READ | PROT_WRITE;

describe('page allocator', () => {
  it('hands out contiguous RAM runs above 16 MiB and takes them back', () => {
    const { k } = setup();
    const pfn = allocPages(k.mm, 8)!;
    expect(pfn).toBeGreaterThanOrEqual(4096);
    expect(allocatedPages(k.mm)).toBe(8);
    expect(pfnToPage(k.mm, pfn + 7)!.refcount).toBe(1);
    const again = allocPages(k.mm, 8)!;
    expect(again + 8 === pfn || pfn + 8 === again).toBe(true);
    freePages(k.mm, pfn, 8);
    freePages(k.mm, again, 8);
    expect(allocatedPages(k.mm)).toBe(0);
    expect(() => freePages(k.mm, pfn, 1)).toThrow(/not allocated/);
  });
  it('never hands out the swiotlb pool', () => {
    const ram = [{ start: physAddr(0), size: bytes(2n * GiB), node: 0 }];
    const k = bootKernel(p2pMachine(), { version: 'newest', physLayout: { ram } });
    expect(allocPages(k.mm, 1)).toBe(0x7c000 - 1); // the top of RAM below the pool at 0x7c000000
    expect(allocPages(k.mm, 0x7c000)).toBeNull(); // more than the 16 MiB..pool run holds
  });
});

describe('mmap and munmap', () => {
  it('places mappings top-down below mmap_base, page aligned, without overlap', () => {
    const { mm } = setup();
    const a = doMmap(mm, 10000n, RW, ANON, null);
    const b = doMmap(mm, 4096n, RW, ANON, null);
    expect(a).toEqual(ok(userAddr(MMAP_BASE - 12288n)));
    expect(b).toEqual(ok(userAddr(MMAP_BASE - 12288n - 4096n)));
    expect(mm.vmas.map((v) => v.end - v.start)).toEqual([4096n, 12288n]);
  });
  it('refuses what do_mmap refuses', () => {
    const { mm } = setup();
    expect(doMmap(mm, 0n, RW, ANON, null)).toMatchObject(E('EINVAL'));
    expect(doMmap(mm, 4096n, RW, MAP_ANONYMOUS, null)).toMatchObject(E('EINVAL'));
    expect(doMmap(mm, 4096n, RW, MAP_SHARED | MAP_ANONYMOUS, null)).toMatchObject(E('EINVAL'));
    expect(doMmap(mm, 1n << 50n, RW, ANON, null)).toMatchObject(E('ENOMEM'));
    const ro: MmapFile = { name: 'ro', writable: false, mmap: () => ok(undefined) };
    expect(doMmap(mm, 4096n, RW, MAP_SHARED, ro)).toMatchObject(E('EACCES'));
    expect(mm.vmas).toHaveLength(0);
  });
  it('faults zeroed pages on first touch and copies bytes both ways', () => {
    const { k, mm } = setup();
    const a = doMmap(mm, 3n * 4096n, RW, ANON, null);
    if (!a.ok) throw new Error(a.detail);
    expect(mm.rssPages).toBe(0);
    const data = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
    expect(copyToUser(mm, userAddr(a.value + 100n), data).ok).toBe(true);
    expect(mm.rssPages).toBe(2);
    expect(allocatedPages(k.mm)).toBe(2);
    const back = copyFromUser(mm, userAddr(a.value + 100n), 5000);
    expect(back.ok && Buffer.from(back.value).equals(Buffer.from(data))).toBe(true);
    const zeros = copyFromUser(mm, userAddr(a.value + 8192n), 16);
    expect(zeros.ok && zeros.value.every((b) => b === 0)).toBe(true);
  });
  it('munmap of the middle splits the VMA and frees exactly those pages', () => {
    const { k, mm } = setup();
    const a = doMmap(mm, 4n * 4096n, RW, ANON, null);
    if (!a.ok) throw new Error(a.detail);
    copyToUser(mm, a.value, new Uint8Array(4 * 4096).fill(7));
    expect(allocatedPages(k.mm)).toBe(4);
    expect(doMunmap(mm, userAddr(a.value + 4096n), 8192n).ok).toBe(true);
    expect(mm.vmas.map((v) => [v.start - a.value, v.end - a.value])).toEqual([
      [0n, 4096n],
      [12288n, 16384n],
    ]);
    expect(mm.vmas[1]!.pgoff).toBe(3);
    expect(allocatedPages(k.mm)).toBe(2);
    expect(copyFromUser(mm, userAddr(a.value + 4096n), 1)).toMatchObject(E('EFAULT'));
    exitMmap(mm);
    expect(allocatedPages(k.mm)).toBe(0);
    expect(mm.rssPages).toBe(0);
  });
  it('munmap rejects an unaligned address and a zero length', () => {
    const { mm } = setup();
    expect(doMunmap(mm, userAddr(4097), 4096n)).toMatchObject(E('EINVAL'));
    expect(doMunmap(mm, userAddr(4096), 0n)).toMatchObject(E('EINVAL'));
    expect(doMunmap(mm, userAddr(4096), 4096n)).toEqual(ok(undefined));
  });
  it('a failing file mmap leaves no VMA behind', () => {
    const { mm } = setup();
    const bad: MmapFile = { name: 'bad', writable: true, mmap: () => err('ENODEV', 'gone') };
    expect(doMmap(mm, 8192n, RW, MAP_SHARED, bad)).toMatchObject(E('ENODEV'));
    expect(mm.vmas).toHaveLength(0);
  });
  it('vm_insert_page takes a reference, sets VM_MIXEDMAP and refuses a second insert', () => {
    const { k, mm } = setup();
    const pfn = allocPages(k.mm, 1)!;
    const page = pfnToPage(k.mm, pfn)!;
    const file: MmapFile = {
      name: 'drv',
      writable: true,
      mmap: (_mm, vma) => vmInsertPage(vma, vma.start, page),
    };
    const a = doMmap(mm, 4096n, RW, MAP_SHARED, file);
    if (!a.ok) throw new Error(a.detail);
    const vma = vmaLookup(mm, a.value)!;
    expect(vma.flags & VM_MIXEDMAP).toBe(VM_MIXEDMAP);
    expect(page.refcount).toBe(2);
    expect(vmInsertPage(vma, vma.start, page)).toMatchObject(E('EBUSY'));
    expect(vmInsertPage(vma, userAddr(vma.end), page)).toMatchObject(E('EFAULT'));
    doMunmap(mm, a.value, 4096n);
    expect(page.refcount).toBe(1);
  });
});
