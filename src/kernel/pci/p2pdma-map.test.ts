import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GiB, MiB, physAddr } from '../../hw/addr.js';
import { bootKernel } from '../kernel.js';
import { pfnToPage } from '../mm/page.js';
import type { KernelVersion } from '../profile.js';
import { pciP2pmemPublish } from './p2pdma-alloc.js';
import {
  isPciP2pdmaPage,
  newP2pdmaMapState,
  p2pdmaDmaLookup,
  pciP2pdmaBusAddrMap,
  pciP2pdmaMapType,
  pciP2pdmaState,
} from './p2pdma-map.js';
import { pciP2pdmaAddResource, pciP2pdmaRelease } from './p2pdma-provider.js';
import { manyProvidersMachine, p2pMachine, testbedBar0 } from './p2pdma-testbed.js';

const RR_CR = 0x0004 | 0x0008;

function setup(version: KernelVersion, dspAcsCtrl?: number, busOffset = 0n) {
  const k = bootKernel(p2pMachine({ dspAcsCtrl, busOffset }), { version });
  const a = k.machine.byName.get('0000:03:00.0')!;
  const b = k.machine.byName.get('0000:04:00.0')!;
  for (const off of [0n, 2n * MiB]) {
    const r = pciP2pdmaAddResource(k, a, 0, 2n * MiB, off);
    if (!r.ok) throw new Error(r.detail);
  }
  const [pg0, pg1] = k.mm.pgmaps.all();
  return { k, a, b, pg0: pg0!, pg1: pg1! };
}

describe.each(['6.1', 'newest'] as const)('pci_p2pdma_map_type (%s)', (version) => {
  it('logs the ACS warnings on the first lookup only, then answers from the cache', () => {
    const { k, a, b, pg0 } = setup(version, RR_CR);
    const mark = k.log.lines.length;
    expect(pciP2pdmaMapType(k, pg0, b)).toBe('thru-host-bridge');
    const first = k.log.since(mark).map((l) => l.text);
    expect(first).toEqual([
      `nvme 0000:04:00.0: ACS redirect is set between the client and provider (${a.name})`,
      'nvme 0000:04:00.0: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:02:00.0;0000:02:01.0',
    ]);
    const again = k.log.lines.length;
    expect(pciP2pdmaMapType(k, pg0.provider!, b)).toBe('thru-host-bridge');
    expect(k.log.since(again)).toEqual([]);
  });

  it('says bus-addr through a plain switch, and not-supported without p2pdma state or for non-PCI clients', () => {
    const { k, a, b, pg0 } = setup(version);
    expect(pciP2pdmaMapType(k, pg0, b)).toBe('bus-addr');
    expect(pciP2pdmaMapType(k, pg0, null)).toBe('not-supported');
    expect(pciP2pdmaRelease(k, a).done).toBe(true);
    expect(pciP2pdmaMapType(k, pg0.provider!, b)).toBe('not-supported');
  });
});

describe('pci_p2pdma_state', () => {
  it("answers 'none' for RAM pages and the map type for P2P pages", () => {
    const { k, b, pg0 } = setup('newest');
    const st = newP2pdmaMapState();
    const ram = pfnToPage(k.mm, Number((5n * GiB) >> 12n))!;
    expect(isPciP2pdmaPage(ram)).toBe(false);
    expect(pciP2pdmaState(k, st, b, ram)).toBe('none');
    const p2p = pfnToPage(k.mm, pg0.firstPfn)!;
    expect(isPciP2pdmaPage(p2p)).toBe(true);
    expect(pciP2pdmaState(k, st, b, p2p)).toBe('bus-addr');
    expect([st.mem, st.pgmap, st.busOff]).toEqual([pg0.provider, pg0, 0n]);
  });

  it('refreshes per provider (newest) or per pagemap (6.1)', () => {
    for (const [version, refreshed] of [
      ['newest', false],
      ['6.1', true],
    ] as const) {
      const { k, b, pg0, pg1 } = setup(version);
      const st = newP2pdmaMapState();
      pciP2pdmaState(k, st, b, pfnToPage(k.mm, pg0.firstPfn)!);
      pciP2pdmaState(k, st, b, pfnToPage(k.mm, pg1.firstPfn)!);
      // Two pagemaps on one BAR: one provider in newest, two pagemaps with their own record in 6.1.
      expect(st.pgmap === pg1).toBe(refreshed);
      expect(pg0.provider === pg1.provider).toBe(!refreshed);
    }
  });
});

describe('bus addresses and the DMA seam', () => {
  it('maps CPU physical addresses to bus addresses with the provider offset', () => {
    const off = 0x300_0000_0000n;
    const { k, pg0 } = setup('newest', undefined, off);
    const cpu = physAddr(testbedBar0(0) + 0x4321n);
    expect(pciP2pdmaBusAddrMap(pg0.provider!, cpu)).toBe(cpu - off);
    const look = p2pdmaDmaLookup(k);
    expect(look.providerOfPfn(pg0.firstPfn + 5)).toBe(pg0.provider);
    expect(look.providerOfPfn(Number((5n * GiB) >> 12n))).toBeNull();
    expect(look.providerOfPfn(Number((testbedBar0(0) + 64n * MiB) >> 12n))).toBeNull(); // BAR, no pagemap
  });

  it('answers map types through the seam with the same cache', () => {
    const { k, a, b, pg0 } = setup('newest');
    pciP2pmemPublish(k, a, true);
    expect(p2pdmaDmaLookup(k).mapType(pg0.provider!, b)).toBe('bus-addr');
    expect(k.p2p.p2pdma.get(a.index)!.mapTypes.size).toBe(1);
  });
});

describe('pfn -> provider lookup with 1,000 providers', () => {
  const k = bootKernel(manyProvidersMachine(1000), { version: 'newest' });
  for (const f of k.machine.functions) {
    const r = pciP2pdmaAddResource(k, f, 0, 0n, 0n);
    if (!r.ok) throw new Error(r.detail);
  }
  const look = p2pdmaDmaLookup(k);
  const pgmaps = [...k.mm.pgmaps.all()];
  const linear = (pfn: number) => pgmaps.find((p) => pfn >= p.firstPfn && pfn <= p.lastPfn)?.provider ?? null;
  const lo = pgmaps[0]!.firstPfn - 1024;
  const hi = pgmaps[pgmaps.length - 1]!.lastPfn + 1024;

  it('registered one pagemap per provider', () => {
    expect(pgmaps).toHaveLength(1000);
    expect(new Set(pgmaps.map((p) => p.provider!.owner)).size).toBe(1000);
  });

  it('agrees with a linear scan for any sequence of pfns', () => {
    // Pfns near pagemap edges (inside, just outside) and anywhere in the span, in any order.
    const nearEdge = fc
      .tuple(fc.integer({ min: 0, max: 999 }), fc.boolean(), fc.integer({ min: -3, max: 3 }))
      .map(([i, end, d]) => (end ? pgmaps[i]!.lastPfn : pgmaps[i]!.firstPfn) + d);
    const pfnArb = fc.oneof(nearEdge, fc.integer({ min: lo, max: hi }));
    fc.assert(
      fc.property(fc.array(pfnArb, { minLength: 1, maxLength: 50 }), (pfns) => {
        for (const pfn of pfns) expect(look.providerOfPfn(pfn)).toBe(linear(pfn));
      }),
      { numRuns: 300 },
    );
  });
});
