import { describe, expect, it } from 'vitest';
import { GiB, MiB, type PhysAddr, physAddr } from '../../hw/addr.js';
import type { Kernel } from '../kernel.js';
import { bootKernel } from '../kernel.js';
import { p2pMachine, testbedBar0 } from '../pci/p2pdma-testbed.js';
import type { KernelVersion } from '../profile.js';
import { PAGE_OFFSET } from './direct-map.js';
import {
  createDevPagemap,
  type DevPagemap,
  type DevPagemapOps,
  devmMemremapPages,
  getDevPagemap,
  memunmapPages,
  type PgmapType,
  pgmapOutstandingRefs,
  putDevPagemap,
} from './memremap.js';
import { getPage, type Page, pfnToPage, putPage, setPageCount, tryGetPage } from './page.js';

const BASE = testbedBar0(0);
const boot = (version: KernelVersion = 'newest'): Kernel => bootKernel(p2pMachine(), { version });

function pgmap(
  k: Kernel,
  start: bigint,
  size: bigint,
  type: PgmapType = 'generic',
  ops?: DevPagemapOps,
): DevPagemap {
  return createDevPagemap(k.mm, { type, start: physAddr(start), end: physAddr(start + size - 1n), ops });
}

function mapped(
  k: Kernel,
  start: bigint,
  size: bigint,
  type: PgmapType = 'generic',
  ops?: DevPagemapOps,
): DevPagemap {
  const p = pgmap(k, start, size, type, ops);
  const r = devmMemremapPages(k.mm, p);
  if (!r.ok) throw new Error(r.detail);
  return p;
}

const pfnOf = (a: PhysAddr | bigint): number => Number(a >> 12n);
const warns = (k: Kernel): string[] => k.log.lines.filter((l) => l.level === 'warn').map((l) => l.text);

describe('devmMemremapPages', () => {
  it('registers the range and returns its direct-map address', () => {
    const k = boot();
    const p = pgmap(k, BASE, 4n * MiB);
    const r = devmMemremapPages(k.mm, p);
    expect(r).toEqual({ ok: true, value: PAGE_OFFSET + BASE });
    expect(p.state).toBe('live');
    expect(k.mm.pgmaps.lookup(pfnOf(BASE + 3n * MiB))).toBe(p);
    expect(pfnToPage(k.mm, pfnOf(BASE))?.pgmap).toBe(p);
  });

  it('runs the kernel checks in order with their errno and messages', () => {
    const k = boot();
    mapped(k, BASE + 4n * MiB, 4n * MiB);
    const cases: [bigint, bigint, string, string | null][] = [
      [BASE + 6n * MiB, 4n * MiB, 'ENOMEM', 'Conflicting mapping in same section'], // start inside
      [BASE + 2n * MiB, 4n * MiB, 'ENOMEM', 'Conflicting mapping in same section'], // end inside
      [GiB, 2n * MiB, 'ENXIO', 'attempted on ram region 0x40000000-0x401fffff'],
      [2n * GiB - 2n * MiB, 4n * MiB, 'ENXIO', null], // WARN_ONCE: already printed
      [
        1n << 46n,
        2n * MiB,
        'EINVAL',
        'Hotplug memory [0x400000000000-0x400000200000] exceeds maximum addressable range [0-0x3fffffffffff]',
      ],
      [
        BASE + 64n * MiB + 4096n,
        2n * MiB,
        'EINVAL',
        'Misaligned __add_pages start: 0x38004001 end: 0x38004200',
      ],
      [BASE + 64n * MiB, 1n * MiB, 'EINVAL', 'Misaligned __add_pages start: 0x38004000 end: 0x380040ff'],
      [BASE, 16n * MiB, 'EEXIST', null], // encloses the registered pagemap
    ];
    for (const [start, size, errno, msg] of cases) {
      const mark = k.log.lines.length;
      const r = devmMemremapPages(k.mm, pgmap(k, start, size));
      expect(r.ok ? 'ok' : r.errno).toBe(errno);
      expect(k.log.since(mark).map((l) => l.text)).toEqual(msg === null ? [] : [msg]);
    }
    expect(k.mm.pgmaps.size).toBe(1);
  });

  it('reports a range partly in RAM as mixed', () => {
    const k = boot();
    const r = devmMemremapPages(k.mm, pgmap(k, 2n * GiB - 2n * MiB, 4n * MiB));
    expect(r.ok ? 'ok' : r.errno).toBe('ENXIO');
    expect(warns(k)).toEqual(['attempted on mixed region 0x7fe00000-0x801fffff']);
  });

  it('wants a free callback and an owner for device private memory', () => {
    for (const [version, name] of [
      ['6.1', 'page_free'],
      ['newest', 'folio_free'],
    ] as const) {
      const k = boot(version);
      const r = devmMemremapPages(k.mm, pgmap(k, BASE, 2n * MiB, 'private'));
      expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
      expect(warns(k)).toEqual([`Missing ${name} method`]);
    }
  });
});

describe('memunmapPages', () => {
  it('finishes at once when nothing holds the pagemap', () => {
    const k = boot();
    const p = mapped(k, BASE, 2n * MiB);
    let done = 0;
    expect(memunmapPages(k.mm, p, () => done++)).toBe('done');
    expect([p.state, done, k.mm.pgmaps.size]).toEqual(['dead', 1, 0]);
    expect(pfnToPage(k.mm, pfnOf(BASE))).toBeNull();
  });

  it('waits for held references; the pagemap and its pages stay until the last one goes', () => {
    const k = boot();
    const p = mapped(k, BASE, 2n * MiB);
    expect(getDevPagemap(k.mm, pfnOf(BASE + 4096n))).toBe(p);
    expect(getDevPagemap(k.mm, pfnOf(BASE + 2n * MiB))).toBeNull();
    expect(pgmapOutstandingRefs(p)).toBe(1);
    let done = 0;
    expect(memunmapPages(k.mm, p, () => done++)).toBe('waiting');
    expect([p.state, done]).toEqual(['dying', 0]);
    expect(getDevPagemap(k.mm, pfnOf(BASE))).toBeNull(); // tryget_live fails on a dying ref
    expect(pfnToPage(k.mm, pfnOf(BASE))?.pgmap).toBe(p);
    putDevPagemap(p);
    expect([p.state, done, k.mm.pgmaps.size]).toEqual(['dead', 1, 0]);
  });
});

describe('page refcounts', () => {
  it('makes RAM pages on demand with count 1 and frees them at 0', () => {
    const k = boot();
    const pfn = pfnOf(5n * GiB);
    const p = pfnToPage(k.mm, pfn)!;
    expect([p.refcount, p.pgmap, p.nid]).toEqual([1, null, 0]);
    getPage(p);
    putPage(k.mm, p);
    expect(k.mm.pages.has(pfn)).toBe(true);
    putPage(k.mm, p);
    expect(k.mm.pages.has(pfn)).toBe(false);
    expect(() => putPage(k.mm, p)).toThrow(/refcount 0/);
    expect(pfnToPage(k.mm, pfnOf(0xc000_0000n))).toBeNull(); // the 32-bit hole has no struct pages
  });

  it('gives idle ZONE_DEVICE pages the profile count; get_page on a free page is a bug', () => {
    const k61 = boot('6.1');
    const k = boot('newest');
    const p61 = pfnToPage(k61.mm, mapped(k61, BASE, 2n * MiB, 'pci-p2pdma').firstPfn)!;
    const pNew = pfnToPage(k.mm, mapped(k, BASE, 2n * MiB, 'pci-p2pdma').firstPfn)!;
    expect([p61.refcount, pNew.refcount]).toEqual([1, 0]);
    expect(tryGetPage(pNew)).toBe(false);
    expect(() => getPage(pNew)).toThrow(/refcount 0/);
    const g = pfnToPage(k.mm, mapped(k, BASE + 2n * MiB, 2n * MiB, 'generic').firstPfn)!;
    expect(g.refcount).toBe(1);
  });

  it('calls the free callback exactly once when the last reference goes (newest: count stays 0)', () => {
    const k = boot('newest');
    const freed: Page[] = [];
    const p = mapped(k, BASE, 2n * MiB, 'pci-p2pdma', { pageFree: (pg) => freed.push(pg) });
    const page = pfnToPage(k.mm, p.firstPfn + 7)!;
    setPageCount(page, 1);
    getPage(page);
    putPage(k.mm, page);
    expect(freed).toEqual([]);
    putPage(k.mm, page);
    expect(freed).toEqual([page]);
    expect(page.refcount).toBe(0);
  });

  it('6.1: resets the count to 1 after the callback; without a callback it only warns once', () => {
    const k = boot('6.1');
    const freed: Page[] = [];
    const withOp = mapped(k, BASE, 2n * MiB, 'pci-p2pdma', { pageFree: (pg) => freed.push(pg) });
    const a = pfnToPage(k.mm, withOp.firstPfn)!;
    putPage(k.mm, a);
    expect([freed.length, a.refcount]).toEqual([1, 1]);
    const noOp = mapped(k, BASE + 2n * MiB, 2n * MiB, 'pci-p2pdma');
    for (const i of [0, 1]) putPage(k.mm, pfnToPage(k.mm, noOp.firstPfn + i)!);
    expect(warns(k)).toEqual([
      'WARNING: mm/memremap.c: free_zone_device_page: WARN_ON_ONCE(!pgmap->ops || !pgmap->ops->page_free)',
    ]);
    expect(pfnToPage(k.mm, noOp.firstPfn)!.refcount).toBe(0);
  });

  it('drops the pagemap reference of a freed device private page', () => {
    const k = boot('newest');
    const p = createDevPagemap(k.mm, {
      type: 'private',
      start: physAddr(BASE),
      end: physAddr(BASE + 2n * MiB - 1n),
      ops: { pageFree: () => {} },
      owner: k.machine.functions[0]!,
    });
    expect(devmMemremapPages(k.mm, p).ok).toBe(true);
    const page = pfnToPage(k.mm, p.firstPfn)!;
    expect(getDevPagemap(k.mm, p.firstPfn)).toBe(p); // the driver allocator's reference for the page
    setPageCount(page, 1);
    const before = p.ref.count;
    putPage(k.mm, page);
    expect(p.ref.count).toBe(before - 1);
  });
});
