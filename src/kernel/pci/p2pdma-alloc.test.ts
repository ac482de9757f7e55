import { describe, expect, it } from 'vitest';
import { AMD_ZEN } from '../../../test/helpers/tiny-machine.js';
import { MiB, U64_MASK } from '../../hw/addr.js';
import type { Machine, PciFunction } from '../../hw/pci.js';
import { bootKernel, type Kernel } from '../kernel.js';
import { kvirtAddr, PAGE_OFFSET } from '../mm/direct-map.js';
import type { KernelVersion } from '../profile.js';
import {
  P2PMEM_FIND_MAX_DEVS,
  pciAllocP2pmem,
  pciFreeP2pmem,
  pciHasP2pmem,
  pciP2pmemAllocSgl,
  pciP2pmemFind,
  pciP2pmemFindMany,
  pciP2pmemFreeSgl,
  pciP2pmemPublish,
  pciP2pmemVirtToBus,
} from './p2pdma-alloc.js';
import { pcimP2pdmaInit, pciP2pdmaAddResource } from './p2pdma-provider.js';
import { p2pmemSysfsRead } from './p2pdma-sysfs.js';
import { manyProvidersMachine, p2pMachine, testbedBar0 } from './p2pdma-testbed.js';

const PAGE = 4096n;
const VERSIONS: readonly KernelVersion[] = ['6.1', 'newest'];

function provider(version: KernelVersion, sizeBytes = 2n * MiB) {
  const k = bootKernel(p2pMachine(), { version });
  const ep = k.machine.byName.get('0000:03:00.0')!;
  const r = pciP2pdmaAddResource(k, ep, 0, sizeBytes, 0n);
  if (!r.ok) throw new Error(r.detail);
  return { k, ep };
}
const avail = (k: Kernel, ep: PciFunction): string => {
  const r = p2pmemSysfsRead(k, ep, 'available');
  return r.ok ? r.value : r.errno;
};

describe.each(VERSIONS)('pci_alloc_p2pmem / pci_free_p2pmem (%s)', (version) => {
  it('allocates whole pages first fit from the BAR and gives them back', () => {
    const { k, ep } = provider(version);
    const base = PAGE_OFFSET + testbedBar0(0);
    const a = pciAllocP2pmem(k, ep, 1n)!;
    const b = pciAllocP2pmem(k, ep, PAGE + 1n)!;
    const c = pciAllocP2pmem(k, ep, PAGE)!;
    expect([a, b, c]).toEqual([base, base + PAGE, base + 3n * PAGE]);
    expect(avail(k, ep)).toBe(`${2n * MiB - 4n * PAGE}\n`);
    pciFreeP2pmem(k, ep, b, PAGE + 1n);
    expect(pciAllocP2pmem(k, ep, 2n * PAGE)).toBe(base + PAGE); // the hole is reused first
    pciFreeP2pmem(k, ep, a, 1n);
    pciFreeP2pmem(k, ep, c, PAGE);
    pciFreeP2pmem(k, ep, kvirtAddr(base + PAGE), 2n * PAGE);
    expect(avail(k, ep)).toBe(`${2n * MiB}\n`);
  });

  it('returns null for size 0, for too much, and for a device without p2pdma', () => {
    const { k, ep } = provider(version);
    expect(pciAllocP2pmem(k, ep, 0n)).toBeNull();
    expect(pciAllocP2pmem(k, ep, 2n * MiB + 1n)).toBeNull();
    expect(pciAllocP2pmem(k, k.machine.byName.get('0000:04:00.0')!, PAGE)).toBeNull();
    expect(pciAllocP2pmem(k, ep, 2n * MiB)).not.toBeNull();
  });

  it('translates to bus addresses: 0 for null or no p2pdma, -1 outside the pool', () => {
    const { k, ep } = provider(version);
    const a = pciAllocP2pmem(k, ep, PAGE)!;
    expect(pciP2pmemVirtToBus(k, ep, kvirtAddr(a + 0x123n))).toBe(testbedBar0(0) + 0x123n);
    expect(pciP2pmemVirtToBus(k, ep, null)).toBe(0n);
    expect(pciP2pmemVirtToBus(k, k.machine.byName.get('0000:04:00.0')!, a)).toBe(0n);
    expect(pciP2pmemVirtToBus(k, ep, kvirtAddr(a + 4n * MiB))).toBe(U64_MASK);
  });

  it('builds and frees a one-entry scatterlist', () => {
    const { k, ep } = provider(version);
    const s = pciP2pmemAllocSgl(k, ep, 10_000)!;
    expect(s.nents).toBe(1);
    expect([s.sgl.pfn, s.sgl.offset, s.sgl.length, s.sgl.end]).toEqual([
      Number(testbedBar0(0) >> 12n),
      0,
      10_000,
      true,
    ]);
    expect(avail(k, ep)).toBe(`${2n * MiB - 3n * PAGE}\n`);
    pciP2pmemFreeSgl(k, ep, s.sgl);
    expect(avail(k, ep)).toBe(`${2n * MiB}\n`);
    expect(pciP2pmemAllocSgl(k, ep, 4 * 1024 * 1024)).toBeNull();
  });
});

describe('publication', () => {
  it('is off until the driver publishes (both profiles)', () => {
    for (const version of VERSIONS) {
      const { k, ep } = provider(version);
      expect(pciHasP2pmem(k, ep)).toBe(false);
      pciP2pmemPublish(k, ep, true);
      expect(pciHasP2pmem(k, ep)).toBe(true);
      pciP2pmemPublish(k, ep, false);
      expect(pciHasP2pmem(k, ep)).toBe(false);
    }
  });

  it('newest: a provider without a pool (pcim_p2pdma_init only) never has p2pmem; allocating from it oopses', () => {
    const k = bootKernel(p2pMachine(), { version: 'newest' });
    const ep = k.machine.byName.get('0000:03:00.0')!;
    pciP2pmemPublish(k, ep, true); // no p2pdma yet: ignored
    expect(pcimP2pdmaInit(k, ep).ok).toBe(true);
    pciP2pmemPublish(k, ep, true);
    expect(pciHasP2pmem(k, ep)).toBe(false);
    expect(() => pciAllocP2pmem(k, ep, PAGE)).toThrow(/NULL pointer dereference/);
  });
});

/** Publish `n` providers of a machine (BAR 0 each). */
function publishAll(k: Kernel, fns: readonly PciFunction[]): void {
  for (const f of fns) {
    const r = pciP2pdmaAddResource(k, f, 0, 2n * MiB, 0n);
    if (!r.ok) throw new Error(r.detail);
    pciP2pmemPublish(k, f, true);
  }
}

describe('pci_p2pmem_find_many', () => {
  it('picks the closest published provider', () => {
    const k = bootKernel(p2pMachine({ switchEndpoints: 2, rootPortEndpoints: 1 }), { version: 'newest' });
    const [a, b] = [k.machine.byName.get('0000:03:00.0')!, k.machine.byName.get('0000:04:00.0')!];
    const c = k.machine.byName.get('0000:40:00.0')!;
    publishAll(k, [a, c]);
    expect(pciP2pmemFind(k, b)).toBe(a); // 4 hops through the switch beats 6 through the host bridge
    expect(pciP2pmemFind(k, c)).toBe(c); // itself: distance 0
    expect(pciP2pmemFindMany(k, [b, c])).toBe(c); // 4 + 6 from a, 6 + 0 from c
    expect(pciP2pmemFindMany(k, [])).toBeNull();
  });

  it('returns null when no published provider is reachable', () => {
    const m = p2pMachine({ switchEndpoints: 1, rootPortEndpoints: 1, hostBridgeId: [0x8086, 0x29c0] });
    const k = bootKernel(m, { version: '6.1' });
    const a = k.machine.byName.get('0000:03:00.0')!;
    const c = k.machine.byName.get('0000:40:00.0')!;
    expect(pciP2pmemFind(k, c)).toBeNull(); // nothing published
    publishAll(k, [a]);
    expect(pciP2pmemFind(k, c)).toBeNull(); // q35 host bridge is not whitelisted
    expect(pciP2pmemFind(k, a)).toBe(a);
  });

  it('draws uniformly among equally close providers across seeds', () => {
    const m: Machine = p2pMachine({ switchEndpoints: 5, rootPortEndpoints: 0 });
    const counts = new Map<string, number>();
    const seeds = 2000;
    for (let seed = 1; seed <= seeds; seed++) {
      const k = bootKernel(m, { version: 'newest', seed });
      const eps = ['03', '04', '05', '06'].map((b) => k.machine.byName.get(`0000:${b}:00.0`)!);
      publishAll(k, eps);
      const got = pciP2pmemFind(k, k.machine.byName.get('0000:07:00.0')!)!;
      counts.set(got.name, (counts.get(got.name) ?? 0) + 1);
    }
    expect(counts.size).toBe(4);
    const expected = seeds / 4;
    const chi2 = [...counts.values()].reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(16.27); // 3 degrees of freedom, p = 0.001
  });

  it('keeps at most 512 candidates: later equally close providers are never picked', () => {
    const k = bootKernel(manyProvidersMachine(600, AMD_ZEN), { version: 'newest', seed: 7 });
    const fns = k.machine.functions;
    publishAll(k, fns.slice(0, 599));
    const client = fns[599]!;
    let maxIndex = -1;
    for (let i = 0; i < 600; i++) maxIndex = Math.max(maxIndex, pciP2pmemFind(k, client)!.index);
    expect(maxIndex).toBeLessThan(P2PMEM_FIND_MAX_DEVS);
    expect(maxIndex).toBeGreaterThan(490);
  });
});
