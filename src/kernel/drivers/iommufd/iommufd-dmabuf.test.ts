// iommufd importing a VFIO dma-buf: IOMMU_IOAS_MAP_FILE maps the BAR at an IOVA of the IOAS's domain;
// a reset of the exporting device revokes it, and by the time the reset's revoke returns the IOMMU
// faults on that IOVA. Errors of the map path, and release on unmap.

import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr } from '../../../hw/addr.js';
import { sleep } from '../../../sim/task.js';
import { dmaTestKernel, fnOf, TB_ROOT_PORT, TB_SWITCH_A } from '../../dma/dma-testbed.js';
import { type DmaBuf, dmaBufExport } from '../../dma-buf/dma-buf.js';
import { kthreadRun, runNonBlocking } from '../../dma-buf/sched.js';
import { ok } from '../../errno.js';
import { iommuIovaToPhys } from '../../iommu/iommu.js';
import { newSgTable } from '../../lib/scatterlist.js';
import { testbedBar0 } from '../../pci/p2pdma-testbed.js';
import { createTimeline } from '../timeline.js';
import { vfioPciCoreRegisterDevice, vfioPciIoctlReset } from '../vfio/vfio-pci-core.js';
import { vfioPciCoreFeatureDmaBuf } from '../vfio/vfio-pci-dmabuf.js';
import { VFIO_DEVICE_FEATURE_GET } from '../vfio/vfio-uapi.js';
import {
  iommufdDeviceAttach,
  iommufdIoasMapFile,
  iommufdIoasUnmap,
  iommufdOpen,
  ioptAreaLive,
} from './iommufd-dmabuf.js';

const run = runNonBlocking;
const IOVA = dmaAddr(0x4000_0000n);

function rig(ranges: [bigint, bigint][] = [[0n, 0x20000n]]) {
  const k = dmaTestKernel({ iommu: 'strict' });
  const tl = createTimeline(() => k.engine.nowNs);
  const vdev = vfioPciCoreRegisterDevice(k, fnOf(k, TB_SWITCH_A), { timeline: tl, resetNs: 5000 });
  const d = run(
    vfioPciCoreFeatureDmaBuf(
      vdev,
      VFIO_DEVICE_FEATURE_GET,
      {
        regionIndex: 0,
        openFlags: 0,
        flags: 0,
        nrRanges: ranges.length,
        dmaRanges: ranges.map(([offset, length]) => ({ offset, length })),
      },
      16 + 16 * ranges.length,
    ),
  );
  if (!d.ok || d.value === 0) throw new Error('export failed');
  const ictx = iommufdOpen(k, { timeline: tl });
  if (!ictx.ok) throw new Error(ictx.detail);
  const client = fnOf(k, TB_ROOT_PORT);
  expect(iommufdDeviceAttach(ictx.value, client).ok).toBe(true);
  return { k, tl, vdev, dmabuf: d.value, ictx: ictx.value, client };
}

describe('IOMMU_IOAS_MAP_FILE of a VFIO dma-buf', () => {
  it('maps the BAR range at the IOVA (MMIO, read/write) and translates the client device', () => {
    const { ictx, dmabuf, client } = rig();
    const a = run(iommufdIoasMapFile(ictx, dmabuf, 0x1000n, 0x10000n, IOVA));
    if (!a.ok) throw new Error(a.detail);
    expect(iommuIovaToPhys(ictx.domain, IOVA)).toBe(testbedBar0(0) + 0x1000n);
    const t = ictx.unit.translate(client.name, IOVA, bytes(0x10000), 'write');
    expect(t.ok && t.ranges).toEqual([{ phys: testbedBar0(0) + 0x1000n, len: 0x10000n }]);
    expect(dmabuf.attachments.map((x) => [x.dev.name, x.peer2peer])).toEqual([['iommu', true]]);
    expect(dmabuf.fileRefs).toBe(2);
    run(iommufdIoasUnmap(ictx, a.value));
    expect([dmabuf.attachments.length, dmabuf.fileRefs, iommuIovaToPhys(ictx.domain, IOVA)]).toEqual([
      0,
      1,
      0n,
    ]);
    expect(ictx.world.warnings).toEqual([]);
  });

  it("a reset revokes: the IOVA faults before the reset's revoke returns; the area stays dead after", () => {
    const { k, tl, vdev, ictx, dmabuf, client } = rig();
    const a = run(iommufdIoasMapFile(ictx, dmabuf, 0n, 0x20000n, IOVA));
    if (!a.ok) throw new Error(a.detail);
    const seen: string[] = [];
    kthreadRun(
      ictx.world,
      'reset',
      (function* () {
        yield sleep(100);
        yield* vfioPciIoctlReset(vdev);
      })(),
    );
    // Look at the IOMMU at the very instant the reset's revoke returns.
    tl.listeners.push((e) => {
      if (e.what !== 'reset: revoke returned, FLR') return;
      const t = ictx.unit.translate(client.name, IOVA, bytes(64), 'read');
      seen.push(t.ok ? 'translated' : `fault ${t.fault.reason}`);
    });
    k.engine.run();
    expect(seen).toEqual(['fault not-present']);
    expect(ioptAreaLive(a.value)).toBe(false);
    expect(ictx.unit.faults.map((f) => [f.requester, f.iova, f.reason])).toEqual([
      [client.name, IOVA, 'not-present'],
    ]);
    expect(tl.events.map((e) => [e.ns, e.who, e.what])).toEqual([
      [0, 'vfio-pci 0000:03:00.0', 'export'],
      [0, 'vfio-pci 0000:03:00.0', 'attach'],
      [0, 'iommufd', 'map'],
      [100, 'vfio-pci 0000:03:00.0', 'reset: revoke'],
      [100, 'iommufd', 'revoke: IOMMU mapping removed'],
      [100, 'vfio-pci 0000:03:00.0', 'reset: revoke returned, FLR'],
      [5100, 'vfio-pci 0000:03:00.0', 'reset: done'],
    ]);
    // After the reset the dma-buf is live again, but iommufd's pages stay revoked until re-mapped.
    expect(iommuIovaToPhys(ictx.domain, IOVA)).toBe(0n);
    expect(ictx.world.warnings).toEqual([]);
  });

  it('refuses what the interconnect cannot serve, and bad ranges', () => {
    const two = rig([
      [0n, 0x1000n],
      [0x2000n, 0x1000n],
    ]);
    expect(run(iommufdIoasMapFile(two.ictx, two.dmabuf, 0n, 0x1000n, IOVA))).toMatchObject({
      errno: 'EOPNOTSUPP',
    });
    expect(two.dmabuf.attachments).toEqual([]);
    expect(two.dmabuf.fileRefs).toBe(1);
    const r = rig();
    expect(run(iommufdIoasMapFile(r.ictx, r.dmabuf, 0n, 0x21000n, IOVA))).toMatchObject({ errno: 'EINVAL' });
    expect(run(iommufdIoasMapFile(r.ictx, r.dmabuf, 0x800n, 0x1000n, IOVA))).toMatchObject({
      errno: 'EINVAL',
    });
    const other = dmaBufExport(r.ictx.world, {
      expName: 'amdgpu',
      sizeBytes: 0x1000,
      ops: { map_dma_buf: () => ok(newSgTable()), unmap_dma_buf: () => {}, release: () => {} },
      priv: {},
    });
    expect(
      run(iommufdIoasMapFile(r.ictx, (other as { value: DmaBuf }).value, 0n, 0x1000n, IOVA)),
    ).toMatchObject({
      errno: 'EOPNOTSUPP',
    });
  });
});
