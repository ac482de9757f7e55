import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { busAddr, bytes } from './addr.js';
import { ConfigError, decodeConfig } from './pci-config.js';
import {
  type ConfigFields,
  EXT_CAP_OFFSET,
  encodeConfig,
  findAcsCap,
  setAcsCtrl,
} from './pci-config-encode.js';
import type { PciePortType } from './pci-regs.js';

const u16 = fc.integer({ min: 0, max: 0xffff });
const u8 = fc.integer({ min: 0, max: 0xff });
const speed = fc.constantFrom(null, 2.5, 5, 8, 16, 32, 64);
const width = fc.constantFrom(null, 1, 2, 4, 8, 12, 16, 32);
const link = fc.record({ speedGts: speed, width, maxSpeedGts: speed, maxWidth: width });
const acs = fc.oneof(
  fc.constant({ state: 'absent' as const }),
  fc.record({
    state: fc.constant('present' as const),
    capOffset: fc.constant(EXT_CAP_OFFSET.acs),
    cap: fc.integer({ min: 0, max: 0x7f }),
    ctrl: fc.integer({ min: 0, max: 0x7f }),
  }),
);
const sriov = fc.option(
  fc.record({ totalVfs: u16, numVfs: u16, vfOffset: u16, vfStride: u16, vfDevice: u16 }),
  { nil: null },
);
const ids = fc.record({
  vendor: fc.integer({ min: 0, max: 0xfffe }),
  device: u16,
  revision: u8,
  classCode: fc.integer({ min: 0, max: 0xffffff }),
  multifunction: fc.boolean(),
});
const pcieType = (types: PciePortType[]) => fc.constantFrom(...types);

/** Normal (type 0) functions: PCIe endpoints with ACS/SR-IOV, or conventional ones. */
const type0: fc.Arbitrary<ConfigFields> = fc.oneof(
  fc
    .record({
      ids,
      sv: u16,
      sd: u16,
      portType: pcieType(['endpoint', 'legacy-endpoint', 'rc-integrated-endpoint', 'rc-event-collector']),
      link,
      acs,
      sriov,
    })
    .map((r) => ({
      ...r.ids,
      headerType: 0,
      subsystemVendor: r.sv,
      subsystemDevice: r.sd,
      secondaryBus: null,
      subordinateBus: null,
      portType: r.portType,
      link: r.link,
      acs: r.acs,
      sriov: r.sriov,
    })),
  fc.record({ ids, sv: u16, sd: u16 }).map((r) => ({
    ...r.ids,
    headerType: 0,
    subsystemVendor: r.sv,
    subsystemDevice: r.sd,
    secondaryBus: null,
    subordinateBus: null,
    portType: 'none' as const,
    link: null,
    acs: { state: 'absent' as const },
    sriov: null,
  })),
);

/** Bridges (type 1): PCIe ports with or without ACS, with or without a Subsystem ID capability. */
const type1: fc.Arbitrary<ConfigFields> = fc
  .record({
    ids,
    ss: fc.option(fc.tuple(u16, u16), { nil: null }),
    sec: u8,
    sub: u8,
    portType: fc.constantFrom<PciePortType | 'none'>(
      'root-port',
      'upstream-port',
      'downstream-port',
      'pcie-to-pci-bridge',
      'none',
    ),
    link,
    acs,
  })
  .map((r) => ({
    ...r.ids,
    headerType: 1,
    subsystemVendor: r.ss?.[0] ?? null,
    subsystemDevice: r.ss?.[1] ?? null,
    secondaryBus: r.sec,
    subordinateBus: r.sub,
    portType: r.portType,
    link: r.portType === 'none' ? null : r.link,
    acs: r.portType === 'none' ? { state: 'absent' as const } : r.acs,
    sriov: null,
  }));

describe('encodeConfig', () => {
  it('round-trips through decodeConfig', () => {
    fc.assert(
      fc.property(fc.oneof(type0, type1), (x) => {
        const c = encodeConfig(x);
        expect(c.length).toBe(x.portType === 'none' ? 256 : 4096);
        expect(decodeConfig(c)).toEqual(x);
      }),
      { numRuns: 500 },
    );
  });

  it('lays the ACS capability out where the kernel finds it and setAcsCtrl patches only ctrl', () => {
    const c = encodeConfig({
      vendor: 0x8086,
      device: 0x2030,
      revision: 4,
      classCode: 0x060400,
      headerType: 1,
      multifunction: false,
      subsystemVendor: null,
      subsystemDevice: null,
      primaryBus: 0x17,
      secondaryBus: 0x18,
      subordinateBus: 0x1c,
      portType: 'root-port',
      link: { speedGts: 8, width: 16, maxSpeedGts: 8, maxWidth: 16 },
      acs: { state: 'present', cap: 0x1f, ctrl: 0 },
      sriov: null,
    });
    expect(findAcsCap(c)).toBe(0x148);
    // Header 0x0001000d: ACS (id 0x0d), version 1, last in the list.
    expect([...c.subarray(0x148, 0x150)]).toEqual([0x0d, 0, 0x01, 0, 0x1f, 0, 0, 0]);
    setAcsCtrl(c, 0x001d);
    expect(decodeConfig(c).acs).toEqual({ state: 'present', capOffset: 0x148, cap: 0x1f, ctrl: 0x1d });
    expect(c[0x18]).toBe(0x17);
  });

  it('writes BAR registers with bus addresses and type bits, and bridge windows', () => {
    const c = encodeConfig({
      vendor: 0x10de,
      device: 0x1db8,
      revision: 0xa1,
      classCode: 0x030200,
      headerType: 0,
      multifunction: false,
      subsystemVendor: 0x10de,
      subsystemDevice: 0x12ab,
      secondaryBus: null,
      subordinateBus: null,
      portType: 'endpoint',
      link: { speedGts: 8, width: 16, maxSpeedGts: 8, maxWidth: 16 },
      acs: { state: 'absent' },
      sriov: null,
      bars: [
        {
          index: 0,
          kind: 'mem32',
          prefetchable: false,
          busStart: busAddr(0xc4000000),
          size: bytes(16 << 20),
        },
        {
          index: 1,
          kind: 'mem64',
          prefetchable: true,
          busStart: busAddr(0x3a000000000n),
          size: bytes(1n << 35n),
        },
      ],
    });
    const dw = (o: number) => new DataView(c.buffer).getUint32(o, true);
    expect(dw(0x10)).toBe(0xc4000000);
    expect(dw(0x14)).toBe(0x0000000c); // low dword of 0x3a000000000: 64-bit, prefetchable
    expect(dw(0x18)).toBe(0x3a0);
    const b = encodeConfig({
      ...{ vendor: 0x10b5, device: 0x9797, revision: 0xab, classCode: 0x060400, multifunction: false },
      headerType: 1,
      subsystemVendor: 0x10b5,
      subsystemDevice: 0x9797,
      secondaryBus: 3,
      subordinateBus: 3,
      portType: 'downstream-port',
      link: null,
      acs: { state: 'absent' },
      sriov: null,
      memWindow: { base: 0xc4000000n, limit: 0xc4ffffffn },
      prefWindow: null,
    });
    const w16 = (o: number) => new DataView(b.buffer).getUint16(o, true);
    expect([w16(0x20), w16(0x22)]).toEqual([0xc400, 0xc4f0]);
    expect(w16(0x24)).toBeGreaterThan(w16(0x26)); // closed prefetchable window
    expect(decodeConfig(b).subsystemVendor).toBe(0x10b5);
  });

  it('refuses what no config space can hold', () => {
    const base = {
      vendor: 1,
      device: 2,
      revision: 0,
      classCode: 0x020000,
      multifunction: false,
      subsystemVendor: 0,
      subsystemDevice: 0,
      secondaryBus: null,
      subordinateBus: null,
      link: null,
      sriov: null,
    };
    expect(() =>
      encodeConfig({ ...base, headerType: 2, portType: 'endpoint', acs: { state: 'absent' } }),
    ).toThrow(ConfigError);
    expect(() =>
      encodeConfig({ ...base, headerType: 0, portType: 'none', acs: { state: 'present', cap: 1, ctrl: 0 } }),
    ).toThrow(/conventional/);
    expect(() =>
      setAcsCtrl(encodeConfig({ ...base, headerType: 0, portType: 'none', acs: { state: 'absent' } }), 1),
    ).toThrow(ConfigError);
  });
});
