import { describe, expect, it } from 'vitest';
import {
  describeLinkRate,
  type PcieGen,
  pcieGenFromGts,
  pcieLinkRate,
  pcieSpeed2MbsEnc,
} from './link-rate.js';

// Expected figures worked by hand, independent of the module's constants:
//   raw = GT/s x lanes / 8 x line code
//   effective (Gen1-5) = raw x 256 / (256 + 16 header + 8 framing/seq/LCRC + 4 DLLP share)  = raw x 256/284
//   effective (Gen6)   = raw x 236/242 x 256 / (256 + 16)
const GEN1_LANE = (2.5 / 8) * 0.8; // 0.25 GB/s
const GEN2_LANE = (5 / 8) * 0.8; // 0.5 GB/s
const GEN3_LANE = (8 / 8) * (128 / 130); // 0.984615 GB/s
const TABLE: [PcieGen, number, number, number][] = [
  // gen, width, raw GB/s, effective GB/s
  [1, 1, GEN1_LANE, 0.225352],
  [1, 4, 4 * GEN1_LANE, 0.901408],
  [1, 16, 16 * GEN1_LANE, 3.605634],
  [2, 1, GEN2_LANE, 0.450704],
  [2, 4, 4 * GEN2_LANE, 1.802817],
  [2, 16, 16 * GEN2_LANE, 7.211268],
  [3, 1, GEN3_LANE, 0.887541],
  [3, 4, 4 * GEN3_LANE, 3.550162],
  [3, 16, 16 * GEN3_LANE, 14.20065],
  [4, 1, 2 * GEN3_LANE, 1.775081],
  [4, 4, 8 * GEN3_LANE, 7.100325],
  [4, 16, 32 * GEN3_LANE, 28.4013],
  [5, 1, 4 * GEN3_LANE, 3.550162],
  [5, 4, 16 * GEN3_LANE, 14.20065],
  [5, 16, 64 * GEN3_LANE, 56.8026],
];

describe('pcieLinkRate', () => {
  it.each(TABLE)('Gen%i x%i: raw %f GB/s, effective %f GB/s', (gen, width, raw, eff) => {
    const r = pcieLinkRate(gen, width);
    expect(r.rawGBps).toBeCloseTo(raw, 5);
    expect(r.effectiveGBps).toBeCloseTo(eff, 5);
  });
  it('Gen6 x16 uses flit efficiency and no per-TLP framing', () => {
    const r = pcieLinkRate(6, 16);
    expect(r.signallingGBps).toBe(128);
    expect(r.rawGBps).toBeCloseTo(121, 9); // 128 x 242/256
    expect(r.effectiveGBps).toBeCloseTo(111.058824, 5); // 121 x 236/242 x 256/272
  });
  it('header size and MPS change the packet efficiency', () => {
    expect(pcieLinkRate(4, 16, { tlp: 'cpld' }).effectiveGBps).toBeCloseTo(31.507692 * (256 / 280), 5);
    expect(pcieLinkRate(4, 16, { mpsBytes: 512 }).effectiveGBps).toBeCloseTo(31.507692 * (512 / 540), 5);
    expect(pcieLinkRate(4, 16, { mpsBytes: 128 }).effectiveGBps).toBeCloseTo(31.507692 * (128 / 156), 5);
  });
  it('rejects impossible links (a bug in the caller)', () => {
    expect(() => pcieLinkRate(4, 0)).toThrow(RangeError);
    expect(() => pcieLinkRate(4, 3.5)).toThrow(RangeError);
    expect(() => pcieLinkRate(4, 16, { mpsBytes: 300 })).toThrow(RangeError);
    expect(() => pcieLinkRate(7 as PcieGen, 16)).toThrow(RangeError);
  });
  it('describes a link for reports', () => {
    expect(describeLinkRate(pcieLinkRate(4, 16))).toBe(
      'Gen4 x16: raw 31.5 GB/s, effective 28.4 GB/s (MPS 256, mwr64)',
    );
  });
});

describe('kernel speed helpers', () => {
  it('pcieSpeed2MbsEnc matches PCIE_SPEED2MBS_ENC integer arithmetic', () => {
    expect([2.5, 5, 8, 16, 32, 64, 3].map(pcieSpeed2MbsEnc)).toEqual([
      2000, 4000, 7876, 15753, 31507, 64000, 0,
    ]);
  });
  it('maps sysfs GT/s to a generation', () => {
    expect(pcieGenFromGts(16)).toBe(4);
    expect(pcieGenFromGts(2.5)).toBe(1);
    expect(pcieGenFromGts(12)).toBeNull();
  });
});
