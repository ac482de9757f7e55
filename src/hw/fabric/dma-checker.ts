// Invariant checker beside the fabric: no byte lost or corrupted. For every completed DMA it hashes
// each leg's source just before the bytes move and its destination just after, and records a
// violation when they differ; it also checks that every byte of the DMA was covered by exactly one
// leg. Mirrors no kernel file (the kernel's dma-debug checks mappings, never contents); it is one of
// the separate checker objects of the simulation (STYLE.md, Simulation).
//
//   fabricDma ... finish: beforeMove (hash sources) -> bytes move -> afterMove (hash destinations)
//
// Register BARs (MMIO handlers) are skipped: a doorbell write is an action, not storage.

import { checksumBytes } from '../memory/checksum.js';
import type { DevBuffer, DmaObserver, DmaOptions } from './data-path.js';
import type { Fabric } from './fabric.js';
import type { RouteLeg, RouteOk } from './routing.js';

/** Hash `len` bytes of the device buffer at `off`. */
function hashLocal(b: DevBuffer, off: number, len: number): bigint {
  return b.kind === 'bytes'
    ? checksumBytes(b.bytes.subarray(off, off + len))
    : b.mem.checksum(b.offset + off, len);
}

/** Hash a leg's target bytes, or null for a register BAR. */
function hashTarget(l: RouteLeg): bigint | null {
  const t = l.target;
  if (t.kind === 'ram') return t.region.mem.checksum(t.offset, l.len);
  return t.bar.backing.kind === 'memory' ? t.bar.backing.mem.checksum(t.offset, l.len) : null;
}

export class DmaByteChecker implements DmaObserver {
  /** What went wrong, one sentence each; empty while the invariant holds. */
  readonly violations: string[] = [];
  dmasChecked = 0;
  bytesChecked = 0;
  private sources: (bigint | null)[] = [];

  beforeMove(o: DmaOptions, r: RouteOk): void {
    this.sources = r.legs.map((l) =>
      o.kind === 'read' ? hashTarget(l) : hashLocal(o.local, l.offset, l.len),
    );
    let covered = 0;
    for (const l of r.legs) {
      if (l.offset !== covered)
        this.violations.push(`${label(o)}: legs leave a gap or overlap at byte ${covered}`);
      covered = l.offset + l.len;
    }
    if (covered !== r.len) this.violations.push(`${label(o)}: legs cover ${covered} of ${r.len} bytes`);
  }

  afterMove(o: DmaOptions, r: RouteOk): void {
    r.legs.forEach((l, i) => {
      const src = this.sources[i];
      const dst = o.kind === 'read' ? hashLocal(o.local, l.offset, l.len) : hashTarget(l);
      if (src == null || dst === null) return;
      if (src !== dst)
        this.violations.push(
          `${label(o)}: leg at +${l.offset} (${l.len} bytes) arrived different from its source`,
        );
      else this.bytesChecked += l.len;
    });
    this.dmasChecked++;
  }
}

const label = (o: DmaOptions): string => o.label ?? `${o.requester.name} ${o.kind} ${o.addr.toString(16)}`;

/**
 * Watch every DMA of `fab` with a new byte checker.
 * @returns the checker; read `violations` at the end of a run.
 */
export function attachDmaChecker(fab: Fabric): DmaByteChecker {
  const c = new DmaByteChecker();
  fab.observers.push(c);
  return c;
}
