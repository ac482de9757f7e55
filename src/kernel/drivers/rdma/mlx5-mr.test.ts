// RDMA MRs over a GPU dma-buf: a dynamic MR streams while memory pressure evicts the buffer — the MTT is
// zapped after in-flight reads drain, the NIC page-faults, re-maps onto the GTT copy and finishes with
// every byte right and no read of the old VRAM after the move; an importer that ignores invalidation is
// caught reading retired memory; a pinned MR keeps the buffer in VRAM; umem argument checks.

import { describe, expect, it } from 'vitest';
import { GiB, MiB } from '../../../hw/addr.js';
import { switchBox } from '../../../hw/fabric/test-machines.js';
import { sleep, WaitQueue } from '../../../sim/task.js';
import { dmaDeviceOf } from '../../dma/dma-context.js';
import { DMA_BIT_MASK } from '../../dma/dma-types.js';
import { dmaSetMaskAndCoherent } from '../../dma/mapping.js';
import { dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { kthreadRun, runNonBlocking } from '../../dma-buf/sched.js';
import { amdgpuBoCreate } from '../gpu/gpu-bo.js';
import { RetiredAccessChecker } from '../gpu/retired-checker.js';
import { kernelOnFabric } from '../kernel-on-fabric.js';
import { vfioPciCoreRegisterDevice } from '../vfio/vfio-pci-core.js';
import { vfioPciCoreFeatureDmaBuf } from '../vfio/vfio-pci-dmabuf.js';
import { VFIO_DEVICE_FEATURE_GET } from '../vfio/vfio-uapi.js';
import { type Mlx5Mr, mlx5IbRegUserMrDmabuf, mlx5StreamFromMr, type StreamResult } from './mlx5-mr.js';
import { GPU_FN, gpuNicRig, NIC_FN } from './rdma-testbed.js';
import { ibUmemDmabufGet, ibUmemDmabufGetPinned, ibUmemDmabufMapPages } from './umem-dmabuf.js';

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
const LEN = Number(4n * MiB);

describe.each(['off', 'strict'] as const)('dynamic dma-buf MR (IOMMU %s)', (iommu) => {
  it('eviction mid-stream: zap after drain, page fault, re-map to GTT, every byte right', () => {
    const rig = gpuNicRig({ iommu });
    const checker = new RetiredAccessChecker(rig.fab, rig.gdev, [NIC_FN]);
    let res: StreamResult | null = null;
    let mr: Mlx5Mr | null = null;
    kthreadRun(
      rig.world,
      'rdma app',
      (function* () {
        const m = yield* mlx5IbRegUserMrDmabuf(rig.ibdev, rig.dmabuf, 0n, BigInt(LEN), 'odp', rig.tl);
        if (!m.ok) throw new Error(m.detail);
        mr = m.value;
        res = yield* mlx5StreamFromMr(rig.nic, m.value, 0n, rig.dst.dma, LEN, {
          chunkBytes: 256 * 1024,
          window: 4,
        });
      })(),
    );
    kthreadRun(
      rig.world,
      'pressure',
      (function* () {
        yield sleep(300_000);
        const p = yield* amdgpuBoCreate(rig.gdev, 'pressure', GiB - 2n * MiB, 'vram');
        if (!p.ok) throw new Error(p.detail);
      })(),
    );
    rig.engine.run();
    const r = res as StreamResult | null;
    expect(r?.ok).toBe(true);
    expect(r?.bytes).toBe(LEN);
    expect(same(rig.read(rig.dst.phys, LEN), rig.data)).toBe(true);
    expect(rig.bo.res.domain).toBe('gtt');
    expect((mr as Mlx5Mr | null)?.stats).toEqual({ faults: 1, zaps: 1, remaps: 1 });
    expect(checker.violations).toEqual([]);
    expect(checker.dmasChecked).toBeGreaterThan(16);
    const at = (w: string) => rig.tl.events.findIndex((e) => e.what === w);
    // evict -> zap (after in-flight reads drained) -> unmap -> copy done -> re-map; the NIC's fault
    // comes after the zap and blocks on the resv lock until the eviction lets go of it.
    expect(at('evict')).toBeLessThan(at('move_notify: MTT zapped'));
    expect(at('move_notify: MTT zapped')).toBeLessThan(at('unmapped'));
    expect(at('move_notify: MTT zapped')).toBeLessThan(at('page fault'));
    expect(at('unmapped')).toBeLessThan(at('move done'));
    expect(at('move done')).toBeLessThan(at('re-mapped'));
    // The chunks before the move read VRAM through the BAR, the ones after read the GTT pages.
    const vramDone = r!.chunks.filter((c) => c.postNs < 300_000).length;
    expect(vramDone).toBeGreaterThan(0);
    expect(vramDone).toBeLessThan(r!.chunks.length);
    expect(rig.world.warnings).toEqual([]);
  });
});

describe('importers that misbehave, and pinned MRs', () => {
  it('an importer that ignores invalidation keeps reading the old VRAM: the checker reports it', () => {
    const rig = gpuNicRig();
    const checker = new RetiredAccessChecker(rig.fab, rig.gdev, [NIC_FN]);
    kthreadRun(
      rig.world,
      'bad app',
      (function* () {
        const u = yield* ibUmemDmabufGet(rig.ibdev, rig.dmabuf, 0n, BigInt(LEN), true, {
          allow_peer2peer: true,
          invalidate_mappings: () => {},
        });
        if (!u.ok) throw new Error(u.detail);
        yield* dmaResvLock(rig.dmabuf.resv, null);
        yield* ibUmemDmabufMapPages(u.value);
        dmaResvUnlock(rig.dmabuf.resv);
        const mr: Mlx5Mr = {
          name: 'bad mr',
          kind: 'odp',
          umem: u.value,
          mtt: u.value.segments,
          inflight: 0,
          drained: new WaitQueue(),
          stats: { faults: 0, zaps: 0, remaps: 0 },
          timeline: null,
        };
        yield sleep(1);
        yield* mlx5StreamFromMr(rig.nic, mr, 0n, rig.dst.dma, LEN, { chunkBytes: 128 * 1024, window: 1 });
      })(),
    );
    kthreadRun(
      rig.world,
      'pressure',
      (function* () {
        yield sleep(200_000);
        yield* amdgpuBoCreate(rig.gdev, 'pressure', GiB - 2n * MiB, 'vram');
      })(),
    );
    rig.engine.run();
    expect(checker.violations.length).toBeGreaterThan(0);
    expect(checker.violations[0]).toMatch(
      /^0000:05:00\.0 read at 0x[0-9a-f]+ \(\+\d+\) hit bo0's old vram placement/,
    );
  });

  it('a pinned MR pins the buffer in VRAM: pressure cannot evict it', () => {
    const rig = gpuNicRig();
    const out: string[] = [];
    kthreadRun(
      rig.world,
      'app',
      (function* () {
        const m = yield* mlx5IbRegUserMrDmabuf(rig.ibdev, rig.dmabuf, 0n, BigInt(LEN), 'pinned');
        if (!m.ok) throw new Error(m.detail);
        const p = yield* amdgpuBoCreate(rig.gdev, 'pressure', GiB - 2n * MiB, 'vram');
        out.push(`${p.ok ? 'fit' : p.errno} ${rig.bo.res.domain} pin=${rig.bo.pinCount}`);
        const s = yield* mlx5StreamFromMr(rig.nic, m.value, 0n, rig.dst.dma, LEN);
        out.push(`${s.ok} ${s.bytes}`);
      })(),
    );
    rig.engine.run();
    expect(out).toEqual([`ENOSPC vram pin=1`, `true ${LEN}`]);
    expect(same(rig.read(rig.dst.phys, LEN), rig.data)).toBe(true);
  });

  it('ib_umem_dmabuf_get argument checks', () => {
    const rig = gpuNicRig();
    const ops = { allow_peer2peer: true, invalidate_mappings: () => {} };
    const run = runNonBlocking;
    expect(run(ibUmemDmabufGet(rig.ibdev, rig.dmabuf, 0n, BigInt(LEN) + 1n, true, ops))).toMatchObject({
      errno: 'EINVAL',
    });
    expect(run(ibUmemDmabufGet(rig.ibdev, rig.dmabuf, 0n, 0n, true, ops))).toMatchObject({ errno: 'EINVAL' });
    expect(run(ibUmemDmabufGet(rig.ibdev, rig.dmabuf, (1n << 64n) - 1n, 2n, true, ops))).toMatchObject({
      errno: 'EINVAL',
    });
    const p = run(ibUmemDmabufGetPinned(rig.ibdev, rig.dmabuf, 4096n, 8192n, true));
    expect(p.ok && p.value.segments.map((s) => s.len)).toEqual([8192]);
    expect(rig.fn(GPU_FN).name).toBe(GPU_FN);
  });

  it('VFIO (7.0) refuses a pinned MR: the pinned importer has no invalidate op, so it is not revocable', () => {
    const r = kernelOnFabric(switchBox());
    const vdev = vfioPciCoreRegisterDevice(r.k, r.fn(GPU_FN));
    const arg = {
      regionIndex: 1,
      openFlags: 0,
      flags: 0,
      nrRanges: 1,
      dmaRanges: [{ offset: 0n, length: 1n << 20n }],
    };
    const d = runNonBlocking(vfioPciCoreFeatureDmaBuf(vdev, VFIO_DEVICE_FEATURE_GET, arg, 32));
    if (!d.ok || d.value === 0) throw new Error('export');
    const nic = dmaDeviceOf(r.k.dma, r.fn(NIC_FN));
    dmaSetMaskAndCoherent(nic, DMA_BIT_MASK(64));
    const ibdev = { name: 'mlx5_0', dmaDevice: nic, log: [] };
    expect(runNonBlocking(mlx5IbRegUserMrDmabuf(ibdev, d.value, 0n, 1n << 20n, 'pinned'))).toMatchObject({
      errno: 'EOPNOTSUPP',
    });
    const dyn = runNonBlocking(mlx5IbRegUserMrDmabuf(ibdev, d.value, 0n, 1n << 20n, 'odp'));
    expect(dyn.ok && dyn.value.mtt?.length).toBe(1);
    expect(d.value.fileRefs).toBe(2);
  });
});
