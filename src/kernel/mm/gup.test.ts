import { describe, expect, it } from 'vitest';
import { MiB } from '../../hw/addr.js';
import { sparsePhysMemory } from '../dma/dma-context.js';
import { bootKernel } from '../kernel.js';
import { pciP2pdmaAddResource } from '../pci/p2pdma-provider.js';
import { p2pMachine } from '../pci/p2pdma-testbed.js';
import { p2pmemAllocateOpen } from '../pci/p2pmem-mmap.js';
import {
  FOLL_GET,
  FOLL_NOFAULT,
  FOLL_PCI_P2PDMA,
  FOLL_WRITE,
  GUP_PIN_COUNTING_BIAS,
  gupStats,
  pageMaybeDmaPinned,
  pinUserPagesFast,
  unpinUserPage,
  unpinUserPages,
} from './gup.js';
import { allocatedPages } from './page-alloc.js';
import {
  doMmap,
  doMunmap,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  mmAlloc,
  PROT_READ,
  PROT_WRITE,
  userAddr,
} from './vma.js';

const PAGE = 4096n;
const E = (errno: string) => ({ ok: false, errno });

function setup() {
  const k = bootKernel(p2pMachine(), { version: 'newest' });
  const mm = mmAlloc(k.mm, 'gup', sparsePhysMemory());
  const anon = (pages: bigint, prot = PROT_READ | PROT_WRITE) => {
    const r = doMmap(mm, pages * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, null);
    if (!r.ok) throw new Error(r.detail);
    return r.value;
  };
  return { k, mm, anon };
}

describe('pin_user_pages_fast', () => {
  it('faults anonymous pages in and pins each with GUP_PIN_COUNTING_BIAS', () => {
    const { k, mm, anon } = setup();
    const a = anon(4n);
    const r = pinUserPagesFast(mm, userAddr(a + 100n), 3, FOLL_WRITE);
    if (!r.ok) throw new Error(r.detail);
    expect(r.value.stoppedBy).toBeNull();
    expect(r.value.pages.map((p) => p.refcount)).toEqual([1025, 1025, 1025]);
    expect(r.value.pages.every(pageMaybeDmaPinned)).toBe(true);
    unpinUserPages(mm, r.value.pages);
    expect(r.value.pages.map((p) => p.refcount)).toEqual([1, 1, 1]);
    expect(gupStats(mm)).toEqual({ pinned: 3, unpinned: 3, refusedP2p: 0 });
    doMunmap(mm, a, 4n * PAGE);
    expect(allocatedPages(k.mm)).toBe(0);
  });

  it('keeps an unmapped page alive until it is unpinned', () => {
    const { k, mm, anon } = setup();
    const a = anon(1n);
    const r = pinUserPagesFast(mm, a, 1, FOLL_WRITE);
    if (!r.ok) throw new Error(r.detail);
    doMunmap(mm, a, PAGE);
    expect(allocatedPages(k.mm)).toBe(1);
    expect(r.value.pages[0]!.refcount).toBe(GUP_PIN_COUNTING_BIAS);
    unpinUserPage(mm, r.value.pages[0]!);
    expect(allocatedPages(k.mm)).toBe(0);
    expect(() => unpinUserPage(mm, r.value.pages[0]!)).toThrow(/BUG/);
  });

  it('answers EFAULT, EINVAL as check_vma_flags and the flag check do', () => {
    const { mm, anon } = setup();
    const ro = anon(1n, PROT_READ);
    expect(pinUserPagesFast(mm, ro, 1, FOLL_WRITE)).toMatchObject(E('EFAULT'));
    expect(pinUserPagesFast(mm, ro, 1, 0).ok).toBe(true);
    expect(pinUserPagesFast(mm, userAddr(0x1000), 1, 0)).toMatchObject(E('EFAULT'));
    expect(pinUserPagesFast(mm, anon(1n), 1, FOLL_NOFAULT)).toMatchObject(E('EFAULT'));
    expect(pinUserPagesFast(mm, ro, 1, FOLL_GET)).toMatchObject(E('EINVAL'));
  });

  it('returns the pages before a hole, and the error only when nothing was pinned', () => {
    const { mm, anon } = setup();
    const a = anon(2n);
    // The page above the mapping is unmapped: two pinned, then EFAULT.
    const r = pinUserPagesFast(mm, a, 3, 0);
    expect(r.ok && r.value.pages.length === 2 && r.value.stoppedBy === 'EFAULT').toBe(true);
  });

  it('refuses P2PDMA pages without FOLL_PCI_P2PDMA with EREMOTEIO, also after normal pages', () => {
    const { k, mm } = setup();
    const ep = k.machine.byName.get('0000:03:00.0')!;
    expect(pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 0n).ok).toBe(true);
    const f = p2pmemAllocateOpen(k, ep);
    if (!f.ok) throw new Error(f.detail);
    const p2p = doMmap(mm, 2n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f.value);
    if (!p2p.ok) throw new Error(p2p.detail);
    // The next anonymous mapping lands right below the P2P one: one range covers both.
    const a = doMmap(mm, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, null);
    if (!a.ok) throw new Error(a.detail);
    expect(a.value + PAGE).toBe(p2p.value);
    const mixed = pinUserPagesFast(mm, a.value, 3, FOLL_WRITE);
    expect(mixed.ok && mixed.value.pages.length === 1 && mixed.value.stoppedBy === 'EREMOTEIO').toBe(true);
    expect(pinUserPagesFast(mm, p2p.value, 2, FOLL_WRITE)).toMatchObject(E('EREMOTEIO'));
    const ok2 = pinUserPagesFast(mm, a.value, 3, FOLL_WRITE | FOLL_PCI_P2PDMA);
    expect(ok2.ok && ok2.value.pages.length).toBe(3);
    expect(gupStats(mm).refusedP2p).toBe(2);
  });
});
