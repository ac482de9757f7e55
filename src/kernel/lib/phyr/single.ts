// phyr layout `single`: one contiguous range held in two fields — what `dma_map_phys()` and
// `dma_map_page()` map, and a 1 GiB huge page needs instead of 2^18 page pointers (reference §6).

import { type Bytes, bytes, type PhysAddr, physAddr } from '../../../hw/addr.js';
import { err, type KResult, ok } from '../../errno.js';
import type { PgmapOf, PhyrCursor, PhyrList } from '../phyr.js';
import type { PhysRange } from './merge.js';
import { phyrRanges16Build } from './ranges16.js';

class SingleCursor implements PhyrCursor {
  done: boolean;
  readonly phys: PhysAddr;
  readonly len: Bytes;

  constructor(phys: PhysAddr, len: Bytes) {
    this.phys = phys;
    this.len = len;
    this.done = len === 0n;
  }

  advance(): void {
    if (this.done) throw new RangeError('phyr cursor advanced past the end');
    this.done = true;
  }
}

/** One physical range (length 0 means an empty list). */
export class PhyrSingle implements PhyrList {
  readonly layout = 'single' as const;
  readonly phys: PhysAddr;
  readonly len: Bytes;

  constructor(phys: PhysAddr, len: Bytes) {
    if (len < 0n) throw new RangeError(`phyr single range with negative length ${len}`);
    this.phys = len === 0n ? physAddr(0) : phys;
    this.len = len;
  }

  get entryCount(): number {
    return this.len === 0n ? 0 : 1;
  }

  totalLen(): Bytes {
    return this.len;
  }

  cursor(): PhyrCursor {
    return new SingleCursor(this.phys, this.len);
  }

  slice(offset: Bytes, len: Bytes): PhyrSingle {
    if (offset < 0n || len < 0n || offset + len > this.len) {
      throw new RangeError(`phyr slice [${offset}, +${len}) of a ${this.len}-byte list`);
    }
    return new PhyrSingle(physAddr(this.phys + offset), len);
  }

  bytesUsed(): number {
    return 16;
  }
}

/**
 * Build a `single` list from ranges (merged first).
 * @returns ok; EINVAL when the ranges do not merge into at most one range.
 */
export function phyrSingleFromRanges(ranges: Iterable<PhysRange>, pgmapOf: PgmapOf): KResult<PhyrSingle> {
  const runs = phyrRanges16Build(ranges, pgmapOf);
  if (runs.entryCount > 1) return err('EINVAL', `${runs.entryCount} separate runs do not fit one range`);
  if (runs.entryCount === 0) return ok(new PhyrSingle(physAddr(0), bytes(0)));
  return ok(new PhyrSingle(runs.physAt(0), runs.lenAt(0)));
}
