// The DMA side of a phyr mapping: `{dma, len}` ranges, what the device is handed.
//
// This is the slimmed scatterlist that Matthew Wilcox and Christoph Hellwig proposed (reference §6:
// "the scatterlist shrink to just {dma_address, dma_length}", `struct dma_range`): the mapping
// layer reads a `PhyrCursor` (CPU side) and writes here, so the two never share an entry the way a
// scatterlist's page_link and dma_address do. Storage is 16 bytes per range in typed-array chunks.

import { type Bytes, bytes, type DmaAddr, dmaAddr } from '../../../hw/addr.js';
import { ChunkedU64 } from './chunked-u64.js';

/** One DMA range `[dma, dma + len)`. */
export interface DmaRange {
  readonly dma: DmaAddr;
  readonly len: Bytes;
}

/** Read-only cursor over a `DmaRangeList`, positioned on the first range when created. */
export interface DmaRangeCursor {
  readonly done: boolean;
  readonly dma: DmaAddr;
  readonly len: Bytes;
  advance(): void;
}

/** Appendable list of DMA ranges. */
export class DmaRangeList {
  private readonly words = new ChunkedU64();
  private total = 0n;

  /** Number of ranges. */
  get count(): number {
    return this.words.length / 2;
  }

  /** Append `[dma, dma + len)` as a new range. Precondition: len > 0. */
  push(dma: DmaAddr, len: Bytes): void {
    if (len <= 0n) throw new RangeError(`DMA range of length ${len}`);
    this.words.push(dma);
    this.words.push(len);
    this.total += len;
  }

  /**
   * Grow the last range by `len` bytes (the mapping layer merges an IOVA-contiguous segment into
   * the previous one, as `__finalise_sg()` does). Precondition: the list is not empty, len > 0.
   */
  extendLast(len: Bytes): void {
    const n = this.words.length;
    if (n === 0 || len <= 0n) throw new RangeError('extendLast on an empty DMA list or by <= 0');
    this.words.set(n - 1, this.words.get(n - 1) + len);
    this.total += len;
  }

  dmaAt(i: number): DmaAddr {
    return dmaAddr(this.words.get(2 * i));
  }

  lenAt(i: number): Bytes {
    return bytes(this.words.get(2 * i + 1));
  }

  totalLen(): Bytes {
    return bytes(this.total);
  }

  /** Release growth slack once the list is complete. */
  trim(): void {
    this.words.trim();
  }

  bytesUsed(): number {
    return this.words.byteLength;
  }

  cursor(): DmaRangeCursor {
    const list = this;
    let i = 0;
    const c = {
      done: list.count === 0,
      dma: list.count === 0 ? dmaAddr(0) : list.dmaAt(0),
      len: list.count === 0 ? bytes(0) : list.lenAt(0),
      advance(): void {
        if (c.done) throw new RangeError('DMA range cursor advanced past the end');
        i++;
        if (i >= list.count) {
          c.done = true;
          return;
        }
        c.dma = list.dmaAt(i);
        c.len = list.lenAt(i);
      },
    };
    return c;
  }

  /** Every range, in order. */
  toArray(): DmaRange[] {
    const out: DmaRange[] = [];
    for (let i = 0; i < this.count; i++) out.push({ dma: this.dmaAt(i), len: this.lenAt(i) });
    return out;
  }
}
