import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { bytes, dmaAddr, GiB, MiB } from '../addr.js';
import { buildFabric, type Fabric } from '../fabric/fabric.js';
import { switchBox } from '../fabric/test-machines.js';
import type { CopyResult } from './dma-engine.js';
import { findVramBar, Gpu } from './gpu.js';

function setup(): { e: Engine; fab: Fabric } {
  const e = new Engine();
  return { e, fab: buildFabric(switchBox(), { flows: new FlowModel(e), linkRate: pcieLinkRate }) };
}

describe('Gpu', () => {
  it('keeps VRAM in its 64-bit prefetchable BAR: the bytes a peer reaches over the bus', () => {
    const { e, fab } = setup();
    const gpu = new Gpu(fab, fab.machine.byName.get('0000:04:00.0')!);
    expect(gpu.vramBar.index).toBe(1);
    expect(gpu.vram).toBe(fab.addressMap.barMemory(gpu.fn, 1));
    const ram = fab.addressMap.ram.find((r) => r.base === 4n * GiB)!;
    ram.mem.fill(0, 2 * 1024 * 1024, 0x3c);
    let r: CopyResult | null = null;
    gpu.copyToVram(dmaAddr(4n * GiB), 4096, bytes(2n * MiB), (x) => (r = x));
    e.run();
    expect(r!.ok).toBe(true);
    expect(gpu.vram.readBytes(4096, 16)).toEqual(new Uint8Array(16).fill(0x3c));
    // Only the host side crossed the fabric: the VRAM side was local.
    const c = fab.counters();
    expect(c.hostMemoryBytes).toBe(2 * 1024 * 1024);
    expect(c.links.find((l) => l.name === 'link 0000:02:01.0')).toMatchObject({
      down: 2 * 1024 * 1024,
      up: 0,
    });
  });
  it('copies VRAM to a peer GPU below another root port through the root complex', () => {
    const { e, fab } = setup();
    const a = new Gpu(fab, fab.machine.byName.get('0000:04:00.0')!);
    const b = new Gpu(fab, fab.machine.byName.get('0000:06:00.0')!);
    a.vram.fill(0, 1 << 20, 0x77);
    let r: CopyResult | null = null;
    a.copyFromVram(0, b.vramBusAddr(8192), bytes(MiB), (x) => (r = x));
    e.run();
    expect(r!.ok).toBe(true);
    expect(b.vram.readBytes(8192, 8)).toEqual(new Uint8Array(8).fill(0x77));
    expect(fab.counters().rootComplexBytes).toBe(1 << 20);
    expect(fab.counters().hostMemoryBytes).toBe(0);
  });
  it('refuses a function without a 64-bit prefetchable BAR', () => {
    const { fab } = setup();
    expect(() => findVramBar(fab.machine.byName.get('0000:05:00.0')!)).toThrow(/no VRAM BAR/);
    expect(() => findVramBar(fab.machine.byName.get('0000:04:00.0')!, 0)).toThrow(
      /not a 64-bit prefetchable/,
    );
  });
});
