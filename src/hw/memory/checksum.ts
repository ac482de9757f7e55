// A fast 64-bit checksum for verifying simulated transfers: FNV-1a over little-endian 32-bit words,
// run in two independent 32-bit lanes (different primes and offset bases), then the byte length
// mixed in and each lane finalised with the murmur3 fmix32 avalanche. Mirrors no kernel file (the
// kernel's DMA debug code checks mappings, not contents).
//
// Not cryptographic. Each lane's step h = (h ^ w) * P is a bijection of h for a fixed word (P is
// odd), so changing any single word (and so any single byte) always changes both lanes. A run of
// zero words is h * P^n, which lets never-written memory be hashed in O(log n) without touching it.
// The value depends only on the bytes, not on their alignment in memory or how updates are split.

const PRIME_A = 0x01000193; // the FNV-1a 32-bit prime
const BASIS_A = 0x811c9dc5; // the FNV-1a 32-bit offset basis
const PRIME_B = 0x9e3779b1; // an odd multiplier (2^32 / golden ratio) for an independent second lane
const BASIS_B = 0x6a09e667; // fractional bits of sqrt(2), as SHA-256 uses

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1)
  throw new Error('checksum: a little-endian host is required (words are read through Uint32Array)');

const SCRATCH_BYTES = 64 * 1024;
const scratch = new Uint8Array(SCRATCH_BYTES);
const scratchWords = new Uint32Array(scratch.buffer);

/** p^n mod 2^32 by square-and-multiply; n may exceed 2^32. */
function powMod32(p: number, n: number): number {
  let result = 1;
  let base = p;
  let e = n;
  while (e > 0) {
    if (e % 2 === 1) result = Math.imul(result, base);
    base = Math.imul(base, base);
    e = Math.floor(e / 2);
  }
  return result;
}

function fmix32(h0: number): number {
  let h = h0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A streaming checksum: feed bytes (and runs of zeros) in order, then take the 64-bit digest. */
export class Checksum {
  private a = BASIS_A;
  private b = BASIS_B;
  /** Up to 3 bytes of an unfinished word, little-endian. */
  private carry = 0;
  private carryLen = 0;
  private lengthBytes = 0;

  /** Feed `data`. */
  update(data: Uint8Array): this {
    this.lengthBytes += data.length;
    let i = 0;
    while (this.carryLen > 0 && i < data.length) this.pushByte(data[i++]!);
    let rest = data.length - i;
    if (((data.byteOffset + i) & 3) === 0 && rest >= 4) {
      const off = data.byteOffset + i;
      const nWords = rest >>> 2;
      this.mixWords(new Uint32Array(data.buffer, off, nWords), nWords);
      i += nWords * 4;
    } else {
      // Unaligned: words cannot be viewed in place, so go through an aligned scratch buffer.
      while (rest >= 4) {
        const n = Math.min(SCRATCH_BYTES, rest - (rest & 3));
        scratch.set(data.subarray(i, i + n));
        this.mixWords(scratchWords, n >>> 2);
        i += n;
        rest -= n;
      }
    }
    while (i < data.length) this.pushByte(data[i++]!);
    return this;
  }

  /** Feed `n` zero bytes without reading memory. */
  updateZeros(n: number): this {
    this.lengthBytes += n;
    let left = n;
    while (this.carryLen > 0 && left > 0) {
      this.pushByte(0);
      left--;
    }
    const nWords = Math.floor(left / 4);
    if (nWords > 0) {
      this.a = Math.imul(this.a, powMod32(PRIME_A, nWords));
      this.b = Math.imul(this.b, powMod32(PRIME_B, nWords));
    }
    for (let k = nWords * 4; k < left; k++) this.pushByte(0);
    return this;
  }

  /** The 64-bit digest of everything fed so far (the state is left as it was). */
  digest(): bigint {
    let a = this.a;
    let b = this.b;
    if (this.carryLen > 0) {
      a = Math.imul(a ^ this.carry, PRIME_A);
      b = Math.imul(b ^ this.carry, PRIME_B);
    }
    const lo = this.lengthBytes >>> 0;
    const hi = Math.floor(this.lengthBytes / 0x100000000);
    a = Math.imul(Math.imul(a ^ lo, PRIME_A) ^ hi, PRIME_A);
    b = Math.imul(Math.imul(b ^ lo, PRIME_B) ^ hi, PRIME_B);
    return (BigInt(fmix32(a)) << 32n) | BigInt(fmix32(b));
  }

  private pushByte(v: number): void {
    this.carry |= v << (8 * this.carryLen);
    if (++this.carryLen === 4) {
      const w = this.carry;
      this.a = Math.imul(this.a ^ w, PRIME_A);
      this.b = Math.imul(this.b ^ w, PRIME_B);
      this.carry = 0;
      this.carryLen = 0;
    }
  }

  private mixWords(words: Uint32Array, n: number): void {
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < n; i++) {
      const w = words[i]!;
      a = Math.imul(a ^ w, PRIME_A);
      b = Math.imul(b ^ w, PRIME_B);
    }
    this.a = a;
    this.b = b;
  }
}

/**
 * Checksum of a plain buffer (what a transfer's source or destination should hash to).
 * @returns the 64-bit digest; no errno.
 */
export const checksumBytes = (data: Uint8Array): bigint => new Checksum().update(data).digest();
