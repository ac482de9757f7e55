// VFIO_DEVICE_FEATURE_DMA_BUF: every row of the errno table, the exporter ops (peer2peer, revocable
// importers only, kref per mapping), and revocation by reset, COMMAND.MEMORY and close.

import { describe, expect, it } from 'vitest';
import { bytes, MiB } from '../../../hw/addr.js';
import { sleep } from '../../../sim/task.js';
import { devOf, dmaTestKernel, fnOf, TB_SWITCH_A, TB_SWITCH_B } from '../../dma/dma-testbed.js';
import { DMA_BIT_MASK } from '../../dma/dma-types.js';
import { dmaSetMaskAndCoherent } from '../../dma/mapping.js';
import {
  type DmaBuf,
  type DmaBufAttachOps,
  dmaBufAttach,
  dmaBufDynamicAttach,
} from '../../dma-buf/dma-buf.js';
import {
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from '../../dma-buf/dma-buf-map.js';
import { dmaFenceSignal } from '../../dma-buf/dma-fence.js';
import { dmaResvAddFence, dmaResvLock, dmaResvReserveFences, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { mockFenceNewContext } from '../../dma-buf/mock-fence.js';
import { kthreadRun, runNonBlocking } from '../../dma-buf/sched.js';
import type { SgTable } from '../../lib/scatterlist.js';
import { testbedBar0 } from '../../pci/p2pdma-testbed.js';
import { createTimeline } from '../timeline.js';
import {
  vfioPciCoreCloseDevice,
  vfioPciCoreRegisterDevice,
  vfioPciIoctlReset,
  vfioPciWriteCommandMemory,
} from './vfio-pci-core.js';
import { type VfioPciDmaBuf, vfioPciCoreFeatureDmaBuf, vfioPciDmaBufIommufdMap } from './vfio-pci-dmabuf.js';
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  type VfioDeviceFeatureDmaBuf,
} from './vfio-uapi.js';

const GET = VFIO_DEVICE_FEATURE_GET;
const run = runNonBlocking;
const U64 = 1n << 64n;

function rig(o: { getDmabufPhys?: boolean; memoryEnabled?: boolean } = {}) {
  const k = dmaTestKernel();
  const tl = createTimeline(() => k.engine.nowNs);
  const vdev = vfioPciCoreRegisterDevice(k, fnOf(k, TB_SWITCH_A), { ...o, timeline: tl });
  const dev = devOf(k, TB_SWITCH_B);
  dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
  return { k, vdev, dev, tl, w: vdev.world };
}

const req = (
  ranges: [bigint, bigint][],
  extra: Partial<VfioDeviceFeatureDmaBuf> = {},
): VfioDeviceFeatureDmaBuf => ({
  regionIndex: 0,
  openFlags: 0,
  flags: 0,
  nrRanges: ranges.length,
  dmaRanges: ranges.map(([offset, length]) => ({ offset, length })),
  ...extra,
});

describe('VFIO_DEVICE_FEATURE_DMA_BUF errno table', () => {
  const one: [bigint, bigint][] = [[0n, 0x10000n]];
  const rows: [string, (r: ReturnType<typeof rig>) => ReturnType<typeof vfioPciCoreFeatureDmaBuf>, string][] =
    [
      ['no get_dmabuf_phys', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one), 16), 'EOPNOTSUPP'],
      [
        'SET is not supported',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, VFIO_DEVICE_FEATURE_SET, req(one), 16),
        'EINVAL',
      ],
      ['neither GET nor SET', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, 0, req(one), 16), 'EINVAL'],
      ['argsz below the struct', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one), 15), 'EINVAL'],
      [
        'unreadable payload',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one, { unreadable: 'header' }), 16),
        'EFAULT',
      ],
      ['nr_ranges 0', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([]), 16), 'EINVAL'],
      ['flags != 0', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one, { flags: 1 }), 16), 'EINVAL'],
      [
        'region is the ROM',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one, { regionIndex: 6 }), 16),
        'ENODEV',
      ],
      [
        'ranges array over KMALLOC_MAX_SIZE',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, { ...req(one), nrRanges: 262145 }, 16),
        'ENOMEM',
      ],
      [
        'unreadable ranges',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one, { unreadable: 'ranges' }), 16),
        'EFAULT',
      ],
      ['zero length', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([[0n, 0n]]), 16), 'EINVAL'],
      [
        'unaligned offset',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([[0x800n, 0x1000n]]), 16),
        'EINVAL',
      ],
      ['unaligned length', (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([[0n, 0x1800n]]), 16), 'EINVAL'],
      [
        'total overflows size_t',
        (r) =>
          vfioPciCoreFeatureDmaBuf(
            r.vdev,
            GET,
            req([
              [0n, U64 - 0x1000n],
              [0n, 0x2000n],
            ]),
            16,
          ),
        'EINVAL',
      ],
      [
        'total has bit 63 set',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([[0n, 1n << 63n]]), 16),
        'EINVAL',
      ],
      [
        'an I/O BAR has no provider',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one, { regionIndex: 4 }), 16),
        'EINVAL',
      ],
      [
        'an absent BAR has no provider',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one, { regionIndex: 1 }), 16),
        'EINVAL',
      ],
      [
        'range beyond the BAR',
        (r) => vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([[255n * MiB, 2n * MiB]]), 16),
        'EINVAL',
      ],
      [
        'offset wraps the address space',
        (r) =>
          vfioPciCoreFeatureDmaBuf(
            r.vdev,
            GET,
            req([[U64 - 0x1000n - testbedBar0(0) + 0x1000n, 0x1000n]]),
            16,
          ),
        'EOVERFLOW',
      ],
      [
        'device unregistered',
        (r) => {
          r.vdev.registered = false;
          return vfioPciCoreFeatureDmaBuf(r.vdev, GET, req(one), 16);
        },
        'ENODEV',
      ],
    ];
  it.each(rows)('%s', (name, call, errno) => {
    const r = rig({ getDmabufPhys: name !== 'no get_dmabuf_phys' });
    expect(run(call(r))).toMatchObject({ ok: false, errno });
    expect(r.vdev.dmabufs).toEqual([]);
    expect(r.vdev.regRefs).toBe(0);
  });

  it('PROBE of GET answers 0 and exports nothing', () => {
    const r = rig();
    expect(run(vfioPciCoreFeatureDmaBuf(r.vdev, GET | VFIO_DEVICE_FEATURE_PROBE, req([]), 0))).toEqual({
      ok: true,
      value: 0,
    });
  });

  it('success: a dma-buf of the ranges, revoked from the start when memory decoding is off', () => {
    for (const memoryEnabled of [true, false]) {
      const r = rig({ memoryEnabled });
      const d = run(
        vfioPciCoreFeatureDmaBuf(
          r.vdev,
          GET,
          req([
            [0n, 0x10000n],
            [0x20000n, 0x1000n],
          ]),
          48,
        ),
      );
      if (!d.ok || d.value === 0) throw new Error('no dma-buf');
      const priv = d.value.priv as VfioPciDmaBuf;
      expect([d.value.expName, d.value.sizeBytes, priv.revoked, r.vdev.regRefs]).toEqual([
        'vfio_pci_core',
        0x11000,
        !memoryEnabled,
        1,
      ]);
      expect(priv.physVec).toEqual([
        { paddr: testbedBar0(0), len: bytes(0x10000) },
        { paddr: testbedBar0(0) + 0x20000n, len: bytes(0x1000) },
      ]);
    }
  });
});

/** A dynamic importer that records notifications and, if asked, unmaps `lagNs` after one. */
function importer(log: string[], name: string, onNotify?: () => void): DmaBufAttachOps {
  const op = () => {
    log.push(`${name} invalidated`);
    onNotify?.();
  };
  return { allow_peer2peer: true, invalidate_mappings: op, move_notify: op };
}

function exportOne(r: ReturnType<typeof rig>): DmaBuf {
  const d = run(vfioPciCoreFeatureDmaBuf(r.vdev, GET, req([[0n, 0x10000n]]), 32));
  if (!d.ok || d.value === 0) throw new Error('no dma-buf');
  return d.value;
}

describe('vfio_pci_dmabuf_ops', () => {
  it('attach refuses static, non-revocable and revoked importers', () => {
    const r = rig();
    const d = exportOne(r);
    expect(run(dmaBufAttach(d, r.dev))).toMatchObject({ errno: 'EOPNOTSUPP' });
    expect(run(dmaBufDynamicAttach(d, r.dev, { allow_peer2peer: true }))).toMatchObject({
      errno: 'EOPNOTSUPP',
    });
    expect(
      run(dmaBufDynamicAttach(d, r.dev, { allow_peer2peer: false, invalidate_mappings: () => {} })),
    ).toMatchObject({
      errno: 'EOPNOTSUPP',
    });
    (d.priv as VfioPciDmaBuf).revoked = true;
    expect(run(dmaBufDynamicAttach(d, r.dev, importer([], 'x')))).toMatchObject({ errno: 'ENODEV' });
  });

  it('maps through dma_buf_phys_vec_to_sgt (bus addresses through the switch), one kref per mapping', () => {
    const r = rig();
    const d = exportOne(r);
    const a = run(dmaBufDynamicAttach(d, r.dev, importer([], 'nic')));
    if (!a.ok) throw new Error(a.detail);
    const m = run(dmaBufMapAttachmentUnlocked(a.value, 'bidirectional'));
    if (!m.ok) throw new Error(m.detail);
    expect([m.value.sgl?.dmaAddress, m.value.sgl?.dmaLength]).toEqual([testbedBar0(0), 0x10000]);
    expect((d.priv as VfioPciDmaBuf).kref).toBe(2);
    run(dmaBufUnmapAttachmentUnlocked(a.value, m.value, 'bidirectional'));
    expect((d.priv as VfioPciDmaBuf).kref).toBe(1);
    expect(r.w.warnings).toEqual([]);
  });

  it('the iommufd interconnect: one range only, not while revoked, VFIO dma-bufs only', () => {
    const r = rig();
    const d = exportOne(r);
    const two = run(
      vfioPciCoreFeatureDmaBuf(
        r.vdev,
        GET,
        req([
          [0n, 0x1000n],
          [0x2000n, 0x1000n],
        ]),
        48,
      ),
    );
    const a = run(dmaBufDynamicAttach(d, r.dev, importer([], 'iommufd')));
    if (!a.ok || !two.ok || two.value === 0) throw new Error();
    const a2 = run(dmaBufDynamicAttach(two.value, r.dev, importer([], 'iommufd')));
    if (!a2.ok) throw new Error();
    run(dmaResvLock(d.resv, null));
    expect(vfioPciDmaBufIommufdMap(a.value)).toEqual({
      ok: true,
      value: { paddr: testbedBar0(0), len: bytes(0x10000) },
    });
    (d.priv as VfioPciDmaBuf).revoked = true;
    expect(vfioPciDmaBufIommufdMap(a.value)).toMatchObject({ errno: 'ENODEV' });
    dmaResvUnlock(d.resv);
    run(dmaResvLock(two.value.resv, null));
    expect(vfioPciDmaBufIommufdMap(a2.value)).toMatchObject({ errno: 'EOPNOTSUPP' });
    dmaResvUnlock(two.value.resv);
  });
});

describe('revocation', () => {
  it('reset: invalidate, wait for fences and for the importer to unmap, FLR, then restore', () => {
    const r = rig();
    const d = exportOne(r);
    const log: string[] = [];
    let mapping: { sgt: SgTable } | null = null;
    // The importer drops its mapping 300 ns after it is told (its hardware drains first).
    const a = run(
      dmaBufDynamicAttach(
        d,
        r.dev,
        importer(log, 'nic', () => {
          const m = mapping;
          mapping = null;
          if (m === null) return;
          r.k.engine.schedule(300, () => {
            log.push(`nic unmapped at ${r.k.engine.nowNs}`);
            run(dmaBufUnmapAttachmentUnlocked(a.ok ? a.value : (null as never), m.sgt, 'to-device'));
          });
        }),
      ),
    );
    if (!a.ok) throw new Error(a.detail);
    const m = run(dmaBufMapAttachmentUnlocked(a.value, 'to-device'));
    if (!m.ok) throw new Error(m.detail);
    mapping = { sgt: m.value };
    // A fence of in-flight work signals at 100 ns: the revoke waits for it too.
    const f = mockFenceNewContext(r.w);
    run(dmaResvLock(d.resv, null));
    dmaResvReserveFences(d.resv, 1);
    dmaResvAddFence(d.resv, f, 'bookkeep');
    dmaResvUnlock(d.resv);
    r.k.engine.schedule(100, () => void dmaFenceSignal(f));
    let mapDuringReset = '';
    kthreadRun(
      r.w,
      'reset',
      (function* () {
        yield* vfioPciIoctlReset(r.vdev);
        log.push(`reset returned at ${r.k.engine.nowNs}`);
      })(),
    );
    kthreadRun(
      r.w,
      'late-map',
      (function* () {
        yield sleep(500);
        const x = yield* dmaBufMapAttachmentUnlocked(a.value, 'to-device');
        mapDuringReset = x.ok ? 'ok' : x.errno;
      })(),
    );
    r.k.engine.run();
    expect(log).toEqual([
      'nic invalidated',
      'nic unmapped at 300',
      'nic invalidated',
      `reset returned at ${1_000_300}`,
    ]);
    expect(mapDuringReset).toBe('ENODEV');
    expect(r.tl.events.map((e) => [e.ns, e.what])).toEqual([
      [0, 'export'],
      [0, 'attach'],
      [0, 'map'],
      [0, 'reset: revoke'],
      [300, 'reset: revoke returned, FLR'],
      [1_000_300, 'reset: done'],
    ]);
    // Restored: maps work again, with a fresh kref.
    const again = run(dmaBufMapAttachmentUnlocked(a.value, 'to-device'));
    expect(again.ok).toBe(true);
    expect((d.priv as VfioPciDmaBuf).kref).toBe(2);
    expect(r.w.warnings).toEqual([]);
  });

  it('COMMAND.MEMORY off revokes and on restores; close revokes for good and drops the registration', () => {
    const r = rig();
    const d = exportOne(r);
    const log: string[] = [];
    const a = run(dmaBufDynamicAttach(d, r.dev, importer(log, 'nic')));
    if (!a.ok) throw new Error();
    const priv = d.priv as VfioPciDmaBuf;
    run(vfioPciWriteCommandMemory(r.vdev, false));
    expect([priv.revoked, log.length]).toEqual([true, 1]);
    run(vfioPciWriteCommandMemory(r.vdev, true));
    expect([priv.revoked, log.length]).toEqual([false, 2]);
    run(vfioPciCoreCloseDevice(r.vdev, true));
    expect([priv.revoked, priv.vdev, r.vdev.dmabufs.length, r.vdev.regRefs, log.length]).toEqual([
      true,
      null,
      0,
      0,
      3,
    ]);
    run(dmaResvLock(d.resv, null));
    expect(run(dmaBufMapAttachment(a.value, 'to-device'))).toMatchObject({ errno: 'ENODEV' });
    dmaResvUnlock(d.resv);
    expect(r.w.warnings).toEqual([]);
  });

  it('moving without memory_lock held for writing is reported', async () => {
    const r = rig();
    exportOne(r);
    const { vfioPciDmaBufMove } = await import('./vfio-pci-dmabuf.js');
    run(vfioPciDmaBufMove(r.vdev, true));
    expect(r.w.warnings.map((x) => [x.func, x.message])).toEqual([
      ['vfio_pci_dma_buf_move', 'WARN_ON(debug_locks && !(lockdep_is_held_type(&vdev->memory_lock, 0)))'],
    ]);
  });
});
