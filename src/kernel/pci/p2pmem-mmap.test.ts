import { describe, expect, it } from 'vitest';
import { MiB } from '../../hw/addr.js';
import { sparsePhysMemory } from '../dma/dma-context.js';
import { bootKernel } from '../kernel.js';
import { FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPagesFast, unpinUserPages } from '../mm/gup.js';
import {
  copyFromUser,
  copyToUser,
  doMmap,
  doMunmap,
  MAP_PRIVATE,
  MAP_SHARED,
  mmAlloc,
  PROT_READ,
  PROT_WRITE,
  userAddr,
} from '../mm/vma.js';
import type { KernelVersion } from '../profile.js';
import { pciP2pdmaAddResource, pciP2pdmaRelease } from './p2pdma-provider.js';
import { p2pmemSysfsRead } from './p2pdma-sysfs.js';
import { p2pMachine } from './p2pdma-testbed.js';
import { p2pmemAllocateOpen } from './p2pmem-mmap.js';

const PAGE = 4096n;
const RW = PROT_READ | PROT_WRITE;
const E = (errno: string) => ({ ok: false, errno });

function setup(version: KernelVersion = 'newest') {
  const k = bootKernel(p2pMachine(), { version });
  const ep = k.machine.byName.get('0000:03:00.0')!;
  const r = pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 0n);
  if (!r.ok) throw new Error(r.detail);
  const mm = mmAlloc(k.mm, 'p2pmem-test', sparsePhysMemory());
  const avail = () => {
    const a = p2pmemSysfsRead(k, ep, 'available');
    return a.ok ? BigInt(a.value.trim()) : -1n;
  };
  const map = (len: bigint, flags = MAP_SHARED, pgoff = 0) => {
    const f = p2pmemAllocateOpen(k, ep);
    if (!f.ok) return f;
    return doMmap(mm, len, RW, flags, f.value, pgoff);
  };
  return { k, ep, mm, avail, map };
}

describe('p2pmem/allocate mapped into a process', () => {
  it('maps pool pages, and munmap returns them to the pool', () => {
    const { mm, avail, map } = setup();
    const a = map(16n * PAGE);
    if (!a.ok) throw new Error(a.detail);
    expect(avail()).toBe(2n * MiB - 16n * PAGE);
    expect(mm.rssPages).toBe(16);
    const data = Uint8Array.from({ length: 3 * 4096 }, (_, i) => (i * 7) & 0xff);
    expect(copyToUser(mm, userAddr(a.value + PAGE), data).ok).toBe(true);
    const back = copyFromUser(mm, userAddr(a.value + PAGE), data.length);
    expect(back.ok && Buffer.from(back.value).equals(Buffer.from(data))).toBe(true);
    expect(doMunmap(mm, a.value, 16n * PAGE).ok).toBe(true);
    expect(avail()).toBe(2n * MiB);
  });

  it('refuses private mappings, offsets, oversize requests and 6.1 with the kernel errnos', () => {
    const { k, map, mm } = setup();
    expect(map(PAGE, MAP_PRIVATE)).toMatchObject(E('EINVAL'));
    expect(k.log.lines.at(-1)?.text).toBe('nvme 0000:03:00.0: p2pmem-test: fail, attempted private mapping');
    expect(map(PAGE, MAP_SHARED, 1)).toMatchObject(E('EINVAL'));
    expect(k.log.lines.at(-1)?.text).toMatch(/attempted mapping with non-zero offset$/);
    expect(map(4n * MiB)).toMatchObject(E('ENOMEM'));
    expect(mm.vmas).toHaveLength(0);
    expect(setup('6.1').map(PAGE)).toMatchObject(E('ENOENT'));
  });

  it('partial munmap returns just those pages and keeps the rest mapped', () => {
    const { mm, avail, map } = setup();
    const a = map(8n * PAGE);
    if (!a.ok) throw new Error(a.detail);
    expect(doMunmap(mm, userAddr(a.value + 2n * PAGE), 3n * PAGE).ok).toBe(true);
    expect(avail()).toBe(2n * MiB - 5n * PAGE);
    expect(mm.vmas).toHaveLength(2);
    expect(copyToUser(mm, userAddr(a.value + 6n * PAGE), new Uint8Array([1])).ok).toBe(true);
    doMunmap(mm, a.value, 8n * PAGE);
    expect(avail()).toBe(2n * MiB);
  });

  it('GUP needs FOLL_PCI_P2PDMA, and a pinned page returns to the pool only at unpin', () => {
    const { mm, avail, map } = setup();
    const a = map(4n * PAGE);
    if (!a.ok) throw new Error(a.detail);
    expect(pinUserPagesFast(mm, a.value, 4, FOLL_WRITE)).toMatchObject(E('EREMOTEIO'));
    const pin = pinUserPagesFast(mm, a.value, 4, FOLL_WRITE | FOLL_PCI_P2PDMA);
    if (!pin.ok) throw new Error(pin.detail);
    expect(pin.value.pages.map((p) => p.refcount)).toEqual([1025, 1025, 1025, 1025]);
    doMunmap(mm, a.value, 4n * PAGE);
    expect(avail()).toBe(2n * MiB - 4n * PAGE);
    unpinUserPages(mm, pin.value.pages.slice(0, 1));
    expect(avail()).toBe(2n * MiB - 3n * PAGE);
    unpinUserPages(mm, pin.value.pages.slice(1));
    expect(avail()).toBe(2n * MiB);
  });

  it('a driver unbind zaps the mapping: later access faults and munmap frees nothing twice', () => {
    const { k, ep, mm, map } = setup();
    const a = map(4n * PAGE);
    if (!a.ok) throw new Error(a.detail);
    expect(pciP2pdmaRelease(k, ep).done).toBe(true);
    expect(pinUserPagesFast(mm, a.value, 1, FOLL_PCI_P2PDMA)).toMatchObject(E('EFAULT'));
    expect(copyFromUser(mm, a.value, 1)).toMatchObject(E('EFAULT'));
    expect(doMunmap(mm, a.value, 4n * PAGE).ok).toBe(true);
    expect(p2pmemAllocateOpen(k, ep)).toMatchObject(E('ENOENT'));
  });
});
