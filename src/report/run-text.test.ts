import { describe, expect, it } from 'vitest';
import { fmtBytes, fmtNs } from './run-text.js';

describe('run report units', () => {
  it('prints bytes in binary units and virtual time in the nearest unit', () => {
    expect([fmtBytes(0), fmtBytes(1023), fmtBytes(1024), fmtBytes(64 << 20), fmtBytes(3 * 2 ** 30)]).toEqual([
      '0 B',
      '1023 B',
      '1.0 KiB',
      '64.0 MiB',
      '3.0 GiB',
    ]);
    expect([fmtNs(999), fmtNs(45_100), fmtNs(17_807_429), fmtNs(2.5e9)]).toEqual([
      '999 ns',
      '45.1 µs',
      '17.807 ms',
      '2.500 s',
    ]);
  });
});
