import { describe, expect, it } from 'vitest';
import { bytes, GiB, MiB, physAddr } from '../addr.js';
import { checksumBytes } from './checksum.js';
import { PhysMemoryMap } from './phys-memory-map.js';
import { SparseMemory } from './sparse-memory.js';

function machine() {
  const map = new PhysMemoryMap();
  const low = new SparseMemory('ram low', 'ram', bytes(2n * GiB));
  const high = new SparseMemory('ram high', 'ram', bytes(2n * GiB));
  const bar = new SparseMemory('0000:03:00.0 BAR0', 'bar', bytes(256n * MiB));
  map.add(physAddr(0), low);
  map.add(physAddr(2n * GiB), high); // adjacent to low: a range may cross from one to the other
  map.add(physAddr(0x38_0000_0000n), bar);
  return { map, low, high, bar };
}

describe('PhysMemoryMap', () => {
  it('decodes an address to its region and offset', () => {
    const { map, bar, high } = machine();
    expect(map.lookup(physAddr(0x38_0000_1000n))?.region).toBe(bar);
    expect(map.lookup(physAddr(3n * GiB))?.region).toBe(high);
    expect(map.lookup(physAddr(4n * GiB))).toBeNull();
    expect(map.resolve(physAddr(0x38_0000_1000n), 16)).toEqual({
      ok: true,
      pieces: [{ region: bar, offset: 0x1000, length: 16 }],
    });
  });
  it('refuses overlapping windows, naming both', () => {
    const { map } = machine();
    const cmb = new SparseMemory('nvme0 CMB', 'cmb', bytes(MiB));
    expect(() => map.add(physAddr(0x38_0fff_0000n), cmb)).toThrow(
      'nvme0 CMB [0x380fff0000-0x38100effff] overlaps 0000:03:00.0 BAR0 [0x3800000000-0x380fffffff]',
    );
    map.add(physAddr(0x38_1000_0000n), cmb);
    expect(map.windows.map((w) => w.region.name)).toEqual([
      'ram low',
      'ram high',
      '0000:03:00.0 BAR0',
      'nvme0 CMB',
    ]);
  });
  it('reads and writes across adjacent windows', () => {
    const { map, low, high } = machine();
    const data = Uint8Array.from({ length: 8192 }, (_, i) => i & 0xff);
    const at = physAddr(2n * GiB - 4096n);
    expect(map.write(at, data)).toEqual({ ok: true });
    expect(low.readBytes(Number(2n * GiB) - 4096, 4096)).toEqual(data.subarray(0, 4096));
    expect(high.readBytes(0, 4096)).toEqual(data.subarray(4096));
    const back = new Uint8Array(8192);
    expect(map.read(at, back)).toEqual({ ok: true });
    expect(back).toEqual(data);
    expect(map.checksum(at, 8192)).toBe(checksumBytes(data));
  });
  it('reports the first unmapped address and moves nothing', () => {
    const { map, bar } = machine();
    const end = physAddr(0x38_0000_0000n + 256n * MiB);
    expect(map.write(physAddr(end - 2n), new Uint8Array(4))).toEqual({ ok: false, unmappedAt: end });
    expect(bar.allocatedBytes).toBe(0);
    expect(map.read(physAddr(5n * GiB), new Uint8Array(1))).toEqual({
      ok: false,
      unmappedAt: physAddr(5n * GiB),
    });
    expect(map.copy(physAddr(0), physAddr(4n * GiB - 1n), 2)).toEqual({
      ok: false,
      unmappedAt: physAddr(4n * GiB),
    });
    expect(map.checksum(physAddr(4n * GiB), 1)).toBeNull();
  });
  it('copies RAM to a BAR (a P2P-style DMA) and checksums agree', () => {
    const { map, bar } = machine();
    const src = physAddr(2n * GiB - 100n);
    map.write(
      src,
      Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff),
    );
    expect(map.copy(physAddr(0x38_0000_0010n), src, 300_000)).toEqual({ ok: true });
    expect(map.checksum(physAddr(0x38_0000_0010n), 300_000)).toBe(map.checksum(src, 300_000));
    expect(bar.checksum(0x10, 300_000)).toBe(map.checksum(src, 300_000));
  });
  it('unmaps a region', () => {
    const { map, bar } = machine();
    expect(map.remove(bar)).toBe(true);
    expect(map.remove(bar)).toBe(false);
    expect(map.lookup(physAddr(0x38_0000_0000n))).toBeNull();
  });
});
