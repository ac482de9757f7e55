import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes, TiB } from '../addr.js';
import { Checksum, checksumBytes } from './checksum.js';
import { copyMemory, SparseMemory } from './sparse-memory.js';

const CHUNK = 4096;
const pattern = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('SparseMemory', () => {
  it('round-trips writes across chunk boundaries', () => {
    const m = new SparseMemory('ram', 'ram', bytes(10 * CHUNK), { chunkBytes: CHUNK });
    const data = pattern(3 * CHUNK + 100, 7);
    m.write(CHUNK - 50, data);
    expect(m.readBytes(CHUNK - 50, data.length)).toEqual(data);
    expect(m.allocatedBytes).toBe(5 * CHUNK);
    expect(m.readBytes(CHUNK - 51, 1)).toEqual(new Uint8Array(1));
  });
  it('reads never-written bytes as zeros without allocating, even in a 1 TiB BAR', () => {
    const bar = new SparseMemory('bar0', 'bar', bytes(TiB));
    expect(bar.readBytes(Number(TiB) - 4096, 4096)).toEqual(new Uint8Array(4096));
    const zeros = bar.checksum(0, Number(TiB));
    expect(bar.allocatedBytes).toBe(0);
    bar.write(Number(TiB) - 1, Uint8Array.of(9));
    expect(bar.allocatedBytes).toBe(64 * 1024);
    // The sparse walk (allocated chunks only) agrees with hashing the zeros and the one byte.
    const expected = new Checksum()
      .updateZeros(Number(TiB) - 1)
      .update(Uint8Array.of(9))
      .digest();
    expect(bar.checksum(0, Number(TiB))).toBe(expected);
    expect(bar.checksum(0, Number(TiB))).not.toBe(zeros);
    expect(bar.checksum(Number(TiB) - 64 * 1024 - 7, 64 * 1024 + 7)).toBe(
      new Checksum()
        .updateZeros(64 * 1024 + 6)
        .update(Uint8Array.of(9))
        .digest(),
    );
  });
  it('copies across chunk boundaries between regions of different chunk sizes', () => {
    const a = new SparseMemory('a', 'ram', bytes(16 * CHUNK), { chunkBytes: CHUNK });
    const b = new SparseMemory('b', 'cmb', bytes(1 << 20), { chunkBytes: 64 * 1024 });
    const data = pattern(5 * CHUNK + 3, 1);
    a.write(CHUNK + 17, data);
    copyMemory(b, 64 * 1024 - 1000, a, CHUNK + 17, data.length);
    expect(b.readBytes(64 * 1024 - 1000, data.length)).toEqual(data);
    expect(b.checksum(64 * 1024 - 1000, data.length)).toBe(a.checksum(CHUNK + 17, data.length));
  });
  it('copying never-written bytes zeroes the destination without allocating new chunks', () => {
    const src = new SparseMemory('src', 'ram', bytes(8 * CHUNK), { chunkBytes: CHUNK });
    const dst = new SparseMemory('dst', 'ram', bytes(8 * CHUNK), { chunkBytes: CHUNK });
    const data = pattern(CHUNK + 10, 3);
    dst.write(0, data);
    copyMemory(dst, 0, src, 0, CHUNK + 5);
    // Chunk 0 was overwritten whole with zeros and freed; chunk 1 keeps its last 5 written bytes.
    expect(dst.allocatedBytes).toBe(CHUNK);
    const expected = new Uint8Array(8 * CHUNK);
    expected.set(data.subarray(CHUNK + 5), CHUNK + 5);
    expect(dst.readBytes(0, 8 * CHUNK)).toEqual(expected);
    copyMemory(dst, 0, src, 0, 8 * CHUNK);
    expect(dst.allocatedBytes).toBe(0);
  });
  it('checksums differ on a one-byte change', () => {
    const m = new SparseMemory('m', 'ram', bytes(1 << 20));
    m.write(1000, pattern(200_000, 5));
    const before = m.checksum(0, 1 << 20);
    m.write(150_000, Uint8Array.of(m.readBytes(150_000, 1)[0]! ^ 0x40));
    expect(m.checksum(0, 1 << 20)).not.toBe(before);
  });
  it('refuses accesses outside the region (a caller bug)', () => {
    const m = new SparseMemory('m', 'ram', bytes(CHUNK), { chunkBytes: CHUNK });
    expect(() => m.write(CHUNK - 1, new Uint8Array(2))).toThrow(/beyond size/);
    expect(() => m.read(-1, new Uint8Array(1))).toThrow(RangeError);
    expect(() => new SparseMemory('x', 'ram', bytes(1), { chunkBytes: 1000 })).toThrow(/chunk size/);
  });

  // Model-based: random writes, fills and copies (overlapping ones too) against a flat reference.
  const SIZE = 6 * CHUNK;
  const op = fc.oneof(
    fc.record({
      k: fc.constant('write' as const),
      at: fc.nat(SIZE),
      len: fc.nat(2 * CHUNK),
      seed: fc.nat(255),
    }),
    fc.record({
      k: fc.constant('fill' as const),
      at: fc.nat(SIZE),
      len: fc.nat(3 * CHUNK),
      seed: fc.nat(255),
    }),
    fc.record({
      k: fc.constant('copy' as const),
      at: fc.nat(SIZE),
      len: fc.nat(3 * CHUNK),
      seed: fc.nat(SIZE),
    }),
    fc.record({
      k: fc.constant('xcopy' as const),
      at: fc.nat(SIZE),
      len: fc.nat(3 * CHUNK),
      seed: fc.nat(SIZE),
    }),
  );
  it('behaves like a flat byte array under any sequence of operations', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const m = new SparseMemory('m', 'ram', bytes(SIZE), { chunkBytes: CHUNK });
        const other = new SparseMemory('o', 'bar', bytes(SIZE), { chunkBytes: 2 * CHUNK });
        other.write(100, pattern(SIZE - 200, 9));
        const ref = new Uint8Array(SIZE);
        const otherRef = other.readBytes(0, SIZE);
        for (const o of ops) {
          const len = Math.min(o.len, SIZE - o.at);
          if (o.k === 'write') {
            const d = pattern(len, o.seed);
            m.write(o.at, d);
            ref.set(d, o.at);
          } else if (o.k === 'fill') {
            m.fill(o.at, len, o.seed % 2 === 0 ? 0 : o.seed);
            ref.fill(o.seed % 2 === 0 ? 0 : o.seed, o.at, o.at + len);
          } else {
            const n = Math.min(len, SIZE - o.seed);
            if (o.k === 'copy') {
              copyMemory(m, o.at, m, o.seed, n);
              ref.copyWithin(o.at, o.seed, o.seed + n); // memmove semantics, overlap included
            } else {
              copyMemory(m, o.at, other, o.seed, n);
              ref.set(otherRef.subarray(o.seed, o.seed + n), o.at);
            }
          }
        }
        // Buffer.compare is far faster than a deep toEqual on 24 KiB; name the first differing byte.
        const got = m.readBytes(0, SIZE);
        if (Buffer.compare(got, ref) !== 0) {
          const i = got.findIndex((v, k) => v !== ref[k]);
          expect.fail(`byte ${i}: got ${got[i]}, expected ${ref[i]}`);
        }
        expect(m.checksum(0, SIZE)).toBe(checksumBytes(ref));
      }),
      { numRuns: 300 },
    );
  });
});
