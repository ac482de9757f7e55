import { describe, expect, it } from 'vitest';
import { MiB } from '../../hw/addr.js';
import { bootKernel } from '../kernel.js';
import { getPage, pfnToPage, putPage } from '../mm/page.js';
import type { KernelVersion } from '../profile.js';
import { pciAllocP2pmem, pciP2pmemPublish } from './p2pdma-alloc.js';
import { pciP2pdmaAddResource } from './p2pdma-provider.js';
import { type P2pmemVma, p2pmemAllocMmap, p2pmemMunmap, p2pmemSysfsRead } from './p2pdma-sysfs.js';
import { p2pMachine } from './p2pdma-testbed.js';

const PAGE = 4096n;

function provider(version: KernelVersion) {
  const k = bootKernel(p2pMachine(), { version });
  const ep = k.machine.byName.get('0000:03:00.0')!;
  const r = pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 0n);
  if (!r.ok) throw new Error(r.detail);
  return { k, ep };
}
const read = (
  k: ReturnType<typeof provider>['k'],
  ep: ReturnType<typeof provider>['ep'],
  attr: 'size' | 'available' | 'published',
) => {
  const r = p2pmemSysfsRead(k, ep, attr);
  return r.ok ? r.value : r.errno;
};
const vma = (pages: bigint, extra: Partial<P2pmemVma> = {}): P2pmemVma => ({
  lenBytes: pages * PAGE,
  shared: true,
  pgoff: 0,
  comm: 'fio',
  ...extra,
});

describe.each(['6.1', 'newest'] as const)('p2pmem sysfs files (%s)', (version) => {
  it('reads size, available and published as the kernel formats them', () => {
    const { k, ep } = provider(version);
    expect([read(k, ep, 'size'), read(k, ep, 'available'), read(k, ep, 'published')]).toEqual([
      '2097152\n',
      '2097152\n',
      '0\n',
    ]);
    pciAllocP2pmem(k, ep, 3n * PAGE);
    pciP2pmemPublish(k, ep, true);
    expect([read(k, ep, 'size'), read(k, ep, 'available'), read(k, ep, 'published')]).toEqual([
      '2097152\n',
      `${2n * MiB - 3n * PAGE}\n`,
      '1\n',
    ]);
  });

  it('has no group on a device without p2pdma memory', () => {
    const { k } = provider(version);
    expect(read(k, k.machine.byName.get('0000:04:00.0')!, 'size')).toBe('ENOENT');
  });
});

describe('p2pmem/allocate mmap', () => {
  it('does not exist in 6.1', () => {
    const { k, ep } = provider('6.1');
    expect(p2pmemAllocMmap(k, ep, vma(1n))).toMatchObject({ ok: false, errno: 'ENOENT' });
  });

  it('refuses private mappings and offsets with the kernel text, and runs out with ENOMEM', () => {
    const { k, ep } = provider('newest');
    const mark = k.log.lines.length;
    expect(p2pmemAllocMmap(k, ep, vma(1n, { shared: false }))).toMatchObject({ errno: 'EINVAL' });
    expect(p2pmemAllocMmap(k, ep, vma(1n, { pgoff: 1 }))).toMatchObject({ errno: 'EINVAL' });
    expect(k.log.since(mark).map((l) => [l.level, l.text])).toEqual([
      ['info', 'nvme 0000:03:00.0: fio: fail, attempted private mapping'],
      ['info', 'nvme 0000:03:00.0: fio: fail, attempted mapping with non-zero offset'],
    ]);
    expect(p2pmemAllocMmap(k, ep, vma(513n))).toMatchObject({ errno: 'ENOMEM' });
    expect(read(k, ep, 'available')).toBe('2097152\n');
  });

  it('maps pages with count 1; each page returns to the pool alone when its last reference drops', () => {
    const { k, ep } = provider('newest');
    const m = p2pmemAllocMmap(k, ep, vma(4n));
    if (!m.ok) throw new Error(m.detail);
    const pages = m.value.pfns.map((pfn) => pfnToPage(k.mm, pfn)!);
    expect(pages.map((p) => p.refcount)).toEqual([1, 1, 1, 1]);
    expect(read(k, ep, 'available')).toBe(`${2n * MiB - 4n * PAGE}\n`);
    getPage(pages[1]!); // pinned by an O_DIRECT read
    p2pmemMunmap(k, m.value);
    expect(read(k, ep, 'available')).toBe(`${2n * MiB - PAGE}\n`);
    putPage(k.mm, pages[1]!);
    expect(read(k, ep, 'available')).toBe('2097152\n');
    expect(pages.map((p) => p.refcount)).toEqual([0, 0, 0, 0]);
    p2pmemMunmap(k, m.value); // a second munmap does nothing
    expect(read(k, ep, 'available')).toBe('2097152\n');
    // The freed pages are mappable again without the fresh-page warning.
    expect(p2pmemAllocMmap(k, ep, vma(4n)).ok).toBe(true);
    expect(k.log.lines.some((l) => l.text.includes('VM_WARN_ON_ONCE_PAGE'))).toBe(false);
  });
});
