import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeConfig } from '../pci-config-encode.js';
import { switchBox } from './test-machines.js';
import {
  bridgeWindows,
  descendantBarRanges,
  mergeRanges,
  pciReadBridgeMmio,
  pciReadBridgeMmioPref,
  rangeEdgesWithin,
  rangesContain,
} from './windows.js';

const bridgeConfig = (
  mem: { base: bigint; limit: bigint } | null,
  pref: { base: bigint; limit: bigint } | null,
) =>
  encodeConfig({
    vendor: 0x10b5,
    device: 0x9797,
    revision: 0,
    classCode: 0x060400,
    headerType: 1,
    multifunction: false,
    subsystemVendor: null,
    subsystemDevice: null,
    secondaryBus: 2,
    subordinateBus: 5,
    portType: 'downstream-port',
    link: null,
    acs: { state: 'absent' },
    sriov: null,
    memWindow: mem,
    prefWindow: pref,
  });

describe('bridge windows from config', () => {
  it('decodes the 32-bit and the 64-bit prefetchable windows as pci_read_bridge_mmio(_pref) do', () => {
    const c = bridgeConfig(
      { base: 0x9000_0000n, limit: 0x90ff_ffffn },
      { base: 0x2000_4000_0000n, limit: 0x2000_7fff_ffffn },
    );
    expect(pciReadBridgeMmio(c)).toEqual({ base: 0x9000_0000n, end: 0x9100_0000n });
    expect(pciReadBridgeMmioPref(c)).toEqual({ base: 0x2000_4000_0000n, end: 0x2000_8000_0000n });
  });
  it('reads a closed window (base above limit) as none', () => {
    const c = bridgeConfig(null, null);
    expect(pciReadBridgeMmio(c)).toBeNull();
    expect(pciReadBridgeMmioPref(c)).toBeNull();
  });
  it('round-trips any 1 MiB-granular window pair', () => {
    const mib = fc.bigInt({ min: 0n, max: 0xfffn });
    fc.assert(
      fc.property(mib, mib, fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), mib, (a, n, hi, b) => {
        const mem = { base: a << 20n, limit: ((a + (n % (0x1000n - a))) << 20n) | 0xfffffn };
        const pb = (hi << 32n) | (b << 20n);
        const pref = { base: pb, limit: pb | 0xfffffn };
        const c = bridgeConfig(mem, pref);
        expect(pciReadBridgeMmio(c)).toEqual({ base: mem.base, end: mem.limit + 1n });
        expect(pciReadBridgeMmioPref(c)).toEqual({ base: pref.base, end: pref.limit + 1n });
      }),
    );
  });
});

describe('bridge windows without config', () => {
  it('are the union of the BARs below the bridge', () => {
    const m = switchBox();
    const rp = m.byName.get('0000:00:01.0')!;
    expect(rp.config).toBeNull();
    const w = bridgeWindows(rp);
    expect(w.source).toBe('descendants');
    expect(w.ranges).toEqual(descendantBarRanges(rp));
    // NVMe BAR0 is 16 KiB at 0x8000_0000; the GPU BAR0 starts 16 MiB later, so the gap is not forwarded.
    expect(rangesContain(w.ranges, 0x8000_0000n)).toBe(true);
    expect(rangesContain(w.ranges, 0x8000_4000n)).toBe(false);
    expect(rangesContain(w.ranges, 0x2000_4000_0000n)).toBe(true);
    expect(rangesContain(w.ranges, 0x2001_0000_0000n)).toBe(false);
  });
  it('merge overlapping and touching ranges and drop empty ones', () => {
    expect(
      mergeRanges([
        { base: 10n, end: 20n },
        { base: 0n, end: 5n },
        { base: 5n, end: 7n },
        { base: 15n, end: 30n },
        { base: 40n, end: 40n },
      ]),
    ).toEqual([
      { base: 0n, end: 7n },
      { base: 10n, end: 30n },
    ]);
  });
  it('edges strictly inside a range are where the decode can change', () => {
    expect(rangeEdgesWithin([{ base: 10n, end: 20n }], 0n, 30n)).toEqual([10n, 20n]);
    expect(rangeEdgesWithin([{ base: 10n, end: 20n }], 10n, 20n)).toEqual([]);
  });
});
