import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Checksum, checksumBytes } from './checksum.js';

describe('Checksum', () => {
  it('depends only on the bytes, not on alignment or how updates are split', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 7 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 5 }),
        (data, shift, cuts) => {
          const whole = checksumBytes(data);
          // The same bytes at another alignment inside a bigger buffer.
          const big = new Uint8Array(data.length + 8);
          big.set(data, shift);
          expect(checksumBytes(big.subarray(shift, shift + data.length))).toBe(whole);
          // Fed in pieces.
          const points = [...new Set(cuts.map((c) => Math.min(c, data.length)))].sort((a, b) => a - b);
          const h = new Checksum();
          let at = 0;
          for (const p of [...points, data.length]) {
            h.update(big.subarray(shift + at, shift + p));
            at = p;
          }
          expect(h.digest()).toBe(whole);
        },
      ),
    );
  });
  it('hashes a run of zeros the same as the zero bytes themselves', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 9 }), fc.integer({ min: 0, max: 5000 }), (head, n) => {
        const viaZeros = new Checksum().update(head).updateZeros(n).digest();
        const flat = new Uint8Array(head.length + n);
        flat.set(head);
        expect(viaZeros).toBe(checksumBytes(flat));
      }),
    );
  });
  it('changes when any one byte changes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 2000 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (data, pos, delta) => {
          const other = data.slice();
          const i = pos % data.length;
          other[i] = (other[i]! + delta) & 0xff;
          expect(checksumBytes(other)).not.toBe(checksumBytes(data));
        },
      ),
    );
  });
  it('counts the length: trailing zeros change the digest', () => {
    const sums = [0, 1, 3, 4, 5, 8].map((n) => checksumBytes(new Uint8Array(n)));
    expect(new Set(sums).size).toBe(sums.length);
  });
  it('keeps its digest stable across versions (stored checksums stay comparable)', () => {
    const data = new TextEncoder().encode('dmasim: no byte lost or corrupted');
    expect(checksumBytes(data)).toBe(3226604670497507706n);
  });
});
