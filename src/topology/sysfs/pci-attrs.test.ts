import { describe, expect, it } from 'vitest';
import {
  parseDecAttr,
  parseHexAttr,
  parseLinkSpeed,
  parseLinkWidth,
  parseNumaNode,
  parseResource,
} from './pci-attrs.js';

// The root port 00:02.0 of the oracle case switch-iommu: BAR0 32-bit memory, then bridge windows.
const ROOT_PORT = `0x00000000fea84000 0x00000000fea84fff 0x0000000000040200
${'0x0000000000000000 0x0000000000000000 0x0000000000000000\n'.repeat(12)}0x000000000000d000 0x000000000000dfff 0x0000000000000100
0x00000000fe000000 0x00000000fe5fffff 0x0000000000000200
`;

describe('sysfs attribute parsers', () => {
  it('reads hex and decimal attributes', () => {
    expect(parseHexAttr('0x8086\n')).toBe(0x8086);
    expect(parseHexAttr('0x060400\n')).toBe(0x060400);
    expect(parseHexAttr('garbage')).toBeNull();
    expect(parseHexAttr(null)).toBeNull();
    expect(parseDecAttr('-1\n')).toBe(-1);
    expect(parseDecAttr('12')).toBe(12);
    expect(parseDecAttr('1x')).toBeNull();
  });
  it('reads numa_node, with -1 as unknown', () => {
    expect(parseNumaNode('-1\n')).toBeNull();
    expect(parseNumaNode('1\n')).toBe(1);
  });
  it('reads link speeds in every kernel spelling', () => {
    expect(parseLinkSpeed('8.0 GT/s PCIe\n')).toBe(8);
    expect(parseLinkSpeed('2.5 GT/s PCIe\n')).toBe(2.5);
    expect(parseLinkSpeed('16 GT/s\n')).toBe(16);
    expect(parseLinkSpeed('Unknown\n')).toBeNull();
    expect(parseLinkSpeed('Unknown speed\n')).toBeNull();
    expect(parseLinkWidth('16\n')).toBe(16);
    expect(parseLinkWidth('0\n')).toBeNull();
  });
  it('reads BARs 0-5 and the ROM, not bridge windows', () => {
    const bars = parseResource(ROOT_PORT)!;
    expect(bars).toHaveLength(1);
    expect(bars[0]).toEqual({
      index: 0,
      kind: 'mem32',
      prefetchable: false,
      cpuStart: 0xfea84000n,
      busStart: 0xfea84000n,
      size: 0x1000n,
    });
  });
  it('tells I/O, 64-bit and prefetchable BARs apart and keeps the ROM index', () => {
    const text = [
      '0x000000000000c000 0x000000000000c03f 0x0000000000040101',
      '0x0000000000000000 0x0000000000000000 0x0000000000000000',
      '0x000000fe00000000 0x000000fe00003fff 0x000000000014220c',
      '0x0000000000000000 0x0000000000000000 0x0000000000000000',
      '0x0000000000000000 0x0000000000000000 0x0000000000000000',
      '0x0000000000000000 0x0000000000000000 0x0000000000000000',
      '0x00000000feb80000 0x00000000febbffff 0x0000000000046200',
    ].join('\n');
    const bars = parseResource(text)!;
    expect(bars.map((b) => [b.index, b.kind, b.prefetchable, b.size])).toEqual([
      [0, 'io', false, 0x40n],
      [2, 'mem64', true, 0x4000n],
      [6, 'mem32', true, 0x40000n],
    ]);
  });
  it('rejects a malformed resource file', () => {
    expect(parseResource('0x1 0x2\n')).toBeNull();
    expect(parseResource('zz zz zz\n')).toBeNull();
    expect(parseResource('')).toEqual([]);
  });
});
