// The one seeded PRNG of a simulation (xoshiro128**, 32-bit integer state). Nothing in src/ draws from the platform RNG:
// a run is reproduced from its seed alone.

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    // splitmix32 expands the seed into the four state words (never all zero).
    let s = this.seed;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  /** Next uniformly distributed 32-bit unsigned integer. */
  nextU32(): number {
    const r = Math.imul(this.rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = this.rotl(this.d, 11);
    return r;
  }

  /** Uniform integer in [0, n) without modulo bias (Lemire's method, as get_random_u32_below). */
  below(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000) throw new RangeError(`below(${n})`);
    const threshold = (0x100000000 - n) % n;
    for (;;) {
      const x = this.nextU32();
      if (n <= 0x200000) {
        // x * n < 2^53: exact in a double.
        const m = x * n;
        const low = m % 0x100000000;
        if (low >= threshold) return Math.floor(m / 0x100000000);
      } else {
        const m = BigInt(x) * BigInt(n);
        if (Number(m & 0xffffffffn) >= threshold) return Number(m >> 32n);
      }
    }
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** True with probability p (0..1), decided on 32-bit integers. */
  chance(p: number): boolean {
    return this.nextU32() < Math.floor(p * 0x100000000);
  }

  /** A child generator whose stream does not overlap this one's use (for independent subsystems). */
  fork(): Prng {
    return new Prng(this.nextU32());
  }

  private rotl(x: number, k: number): number {
    return ((x << k) | (x >>> (32 - k))) >>> 0;
  }
}
