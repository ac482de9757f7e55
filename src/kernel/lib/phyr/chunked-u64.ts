// Growable storage of 64-bit words in fixed-size typed-array chunks: the backing store of the phyr
// layouts and of the DMA range list.
//
// No kernel counterpart (the kernel sizes its arrays up front). Chunks avoid the copy-on-growth of a
// single doubling array: a list of a million entries grows chunk by chunk, and `trim()` cuts the last
// chunk to its used length, so a finished list holds exactly 8 bytes per word plus one partial chunk
// of slack at most before trimming and none after.

/** Words per full chunk (64 Ki words = 512 KiB). */
export const CHUNK_WORDS = 1 << 16;
const CHUNK_SHIFT = 16;
const CHUNK_MASK = CHUNK_WORDS - 1;
/** First allocation for a small list; doubles until it reaches a full chunk. */
const FIRST_WORDS = 16;

export class ChunkedU64 {
  private readonly chunks: BigUint64Array[] = [];
  private len = 0;

  /** Number of words stored. */
  get length(): number {
    return this.len;
  }

  /** Append one word (taken modulo 2^64, as a BigUint64Array store does). */
  push(v: bigint): void {
    const ci = this.len >>> CHUNK_SHIFT;
    const off = this.len & CHUNK_MASK;
    let chunk = this.chunks[ci];
    if (chunk === undefined) {
      chunk = new BigUint64Array(ci === 0 ? FIRST_WORDS : CHUNK_WORDS);
      this.chunks.push(chunk);
    } else if (off === chunk.length) {
      // Only the first chunk ever grows in place; later chunks are born full-size.
      const grown = new BigUint64Array(Math.min(chunk.length * 2, CHUNK_WORDS));
      grown.set(chunk);
      chunk = grown;
      this.chunks[ci] = chunk;
    }
    chunk[off] = v;
    this.len++;
  }

  /** Word `i`. Precondition: 0 <= i < length (otherwise a bug: throws). */
  get(i: number): bigint {
    if (i < 0 || i >= this.len) throw new RangeError(`ChunkedU64.get(${i}) of ${this.len}`);
    return this.chunks[i >>> CHUNK_SHIFT]![i & CHUNK_MASK]!;
  }

  /** Overwrite word `i`. Precondition: 0 <= i < length. */
  set(i: number, v: bigint): void {
    if (i < 0 || i >= this.len) throw new RangeError(`ChunkedU64.set(${i}) of ${this.len}`);
    this.chunks[i >>> CHUNK_SHIFT]![i & CHUNK_MASK] = v;
  }

  /** Cut the last chunk to its used length (a copy, so the slack is really released). */
  trim(): void {
    const last = this.chunks.length - 1;
    if (last < 0) return;
    const used = this.len - last * CHUNK_WORDS;
    const chunk = this.chunks[last]!;
    if (used === 0) this.chunks.pop();
    else if (used < chunk.length) this.chunks[last] = chunk.slice(0, used);
  }

  /** Bytes held by the typed arrays (what the memory accounting reports). */
  get byteLength(): number {
    let n = 0;
    for (const c of this.chunks) n += c.byteLength;
    return n;
  }
}
