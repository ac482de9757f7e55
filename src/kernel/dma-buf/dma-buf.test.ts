// dma-buf export, attach, map/unmap and their locking rules, pin-on-map, the 6.1 sg_table cache,
// move_notify / invalidate_mappings, CPU access and revocation, per kernel profile, with a mock exporter.

import { describe, expect, it } from 'vitest';
import { dmaAddr } from '../../hw/addr.js';
import { sleep } from '../../sim/task.js';
import type { DmaDirection } from '../dma/dma-types.js';
import { err, type KResult, ok } from '../errno.js';
import { forEachSgtableSg, newSgTable, type SgTable, sgAllocTable } from '../lib/scatterlist.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufAttachOps,
  type DmaBufOps,
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufPin,
  dmaBufPut,
  getDmaBuf,
} from './dma-buf.js';
import {
  dmaBufBeginCpuAccess,
  dmaBufInvalidateMappings,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufRevoke,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
} from './dma-buf-map.js';
import { dmaFenceSignal } from './dma-fence.js';
import {
  type DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from './dma-resv.js';
import { mockFenceNewContext } from './mock-fence.js';
import { type KTaskOp, kthreadRun, runNonBlocking } from './sched.js';
import { createDmaBufWorld, type DmaBufProfile, type DmaBufWorld, type DmaBufWorldOptions } from './world.js';

interface MockState {
  events: string[];
  pins: number;
  revoked: boolean;
}

/** A two-page exporter; `dynamic` adds pin/unpin, `p2pOnly` refuses importers without peer2peer. */
function mockExporter(
  w: DmaBufWorld,
  opts: { dynamic?: boolean; cacheSgt?: boolean; p2pOnly?: boolean; unaligned?: boolean } = {},
): { ops: DmaBufOps; state: MockState } {
  const state: MockState = { events: [], pins: 0, revoked: false };
  const ops: DmaBufOps = {
    ...(opts.cacheSgt ? { cache_sgt_mapping: true } : {}),
    attach: (_d, a) => (opts.p2pOnly && !a.peer2peer ? err('EOPNOTSUPP', 'P2P only') : ok(undefined)),
    detach: (_d, a) => void state.events.push(`detach ${a.dev.name}`),
    ...(opts.dynamic
      ? {
          pin: (a: DmaBufAttachment) => {
            state.pins++;
            state.events.push(`pin ${a.dev.name}`);
            return ok(undefined);
          },
          unpin: (a: DmaBufAttachment) => {
            state.pins--;
            state.events.push(`unpin ${a.dev.name}`);
          },
        }
      : {}),
    map_dma_buf: (a, dir) => {
      if (state.revoked) return err('ENODEV', 'revoked');
      state.events.push(`map ${a.dev.name} ${dir}`);
      const sgt = newSgTable();
      sgAllocTable(sgt, 2, { version: w.profile });
      let i = 0;
      for (const sg of forEachSgtableSg(sgt)) {
        sg.dmaAddress = dmaAddr(0x10_0000 + 0x1000 * i++ + (opts.unaligned ? 0x80 : 0));
        sg.dmaLength = 0x1000;
      }
      return ok(sgt);
    },
    unmap_dma_buf: (a, _sgt, dir) => void state.events.push(`unmap ${a.dev.name} ${dir}`),
    release: () => void state.events.push('release'),
  };
  return { ops, state };
}

function setup(
  profile: DmaBufProfile,
  exp: Parameters<typeof mockExporter>[1] = {},
  wo: DmaBufWorldOptions = {},
) {
  const w = createDmaBufWorld({ profile, ...wo });
  const { ops, state } = mockExporter(w, exp);
  const r = dmaBufExport(w, { expName: 'mock', sizeBytes: 0x2000, ops, priv: {} });
  if (!r.ok) throw new Error(r.detail);
  return { w, dmabuf: r.value, state };
}

const dev = (name: string) => ({ name });
const run = <T>(op: KTaskOp<T>): T => runNonBlocking(op);
const attachStatic = (d: DmaBuf, name: string) => run(dmaBufAttach(d, dev(name)));
const importer: DmaBufAttachOps = {
  allow_peer2peer: true,
  move_notify: () => {},
  invalidate_mappings: () => {},
};

describe('dma_buf_export', () => {
  it('WARNs with EINVAL without priv or ops, or with pin but no unpin; ENOENT for a dying owner', () => {
    const w = createDmaBufWorld();
    const { ops } = mockExporter(w, { dynamic: true });
    const { unpin: _, ...pinOnly } = ops;
    const bad = [
      dmaBufExport(w, { expName: 'x', sizeBytes: 1, ops, priv: null }),
      dmaBufExport(w, { expName: 'x', sizeBytes: 1, ops: null, priv: {} }),
      dmaBufExport(w, { expName: 'x', sizeBytes: 1, ops: pinOnly, priv: {} }),
    ];
    expect(bad.map((r) => !r.ok && r.errno)).toEqual(['EINVAL', 'EINVAL', 'EINVAL']);
    expect(w.warnings.map((x) => x.message)).toEqual([
      'WARN_ON(!exp_info->priv || !exp_info->ops)',
      'WARN_ON(!exp_info->priv || !exp_info->ops)',
      'WARN_ON(!exp_info->ops->pin != !exp_info->ops->unpin)',
    ]);
    expect(dmaBufExport(w, { expName: 'x', sizeBytes: 1, ops, priv: {}, ownerLive: false })).toMatchObject({
      errno: 'ENOENT',
    });
  });

  it('6.1 refuses cache_sgt_mapping together with pin/unpin; newest has no such flag to check', () => {
    for (const profile of ['6.1', 'newest'] as const) {
      const w = createDmaBufWorld({ profile });
      const { ops } = mockExporter(w, { dynamic: true, cacheSgt: true });
      const r = dmaBufExport(w, { expName: 'x', sizeBytes: 1, ops, priv: {} });
      expect(r.ok).toBe(profile === 'newest');
    }
  });

  it('releases on the last put and WARNs about attachments left behind', () => {
    const { w, dmabuf, state } = setup('newest');
    getDmaBuf(dmabuf);
    attachStatic(dmabuf, 'nvme0');
    dmaBufPut(dmabuf);
    expect(state.events).not.toContain('release');
    dmaBufPut(dmabuf);
    expect(state.events.at(-1)).toBe('release');
    expect(w.warnings).toEqual([
      {
        func: 'dma_buf_release',
        message: 'WARN_ON(!list_empty(&dmabuf->attachments))',
        call: 'dma_buf_put(dmabuf=mock)',
        backtrace: ['dma_buf_put(dmabuf=mock)'],
      },
    ]);
  });
});

describe.each(['6.1', 'newest'] as DmaBufProfile[])('attach on %s', (profile) => {
  it('keeps attachments newest first, lets the exporter refuse, detaches outside the lock', () => {
    const { w, dmabuf, state } = setup(profile, { p2pOnly: true });
    expect(run(dmaBufAttach(dmabuf, dev('cpu')))).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    const a = run(dmaBufDynamicAttach(dmabuf, dev('gpu0'), importer));
    const b = run(dmaBufDynamicAttach(dmabuf, dev('gpu1'), importer));
    expect(a.ok && b.ok && a.value.peer2peer).toBe(true);
    expect(dmabuf.attachments.map((x) => x.dev.name)).toEqual(['gpu1', 'gpu0']);
    if (a.ok) run(dmaBufDetach(dmabuf, a.value));
    expect(dmabuf.attachments.map((x) => x.dev.name)).toEqual(['gpu1']);
    // 6.1 maps a dynamic importer of a static exporter once at attach and drops that mapping at detach.
    const premap =
      profile === '6.1'
        ? ['map gpu0 bidirectional', 'map gpu1 bidirectional', 'unmap gpu0 bidirectional']
        : [];
    expect(state.events).toEqual([...premap, 'detach gpu0']);
    expect(w.warnings).toEqual([]);
  });

  it('a dynamic importer without move_notify is refused only before 7.0', () => {
    const { w, dmabuf } = setup(profile);
    const r = run(dmaBufDynamicAttach(dmabuf, dev('iommufd'), { allow_peer2peer: true }));
    expect(r.ok).toBe(profile === 'newest');
    expect(w.warnings.length).toBe(profile === 'newest' ? 0 : 1);
  });
});

describe('pinning and the 6.1 sg_table cache', () => {
  it('6.1: a static importer of a dynamic exporter is pinned and mapped once at attach', () => {
    const { w, dmabuf, state } = setup('6.1', { dynamic: true });
    const a = attachStatic(dmabuf, 'nic');
    expect(state.events).toEqual(['pin nic', 'map nic bidirectional']);
    if (!a.ok) throw new Error();
    const m1 = run(dmaBufMapAttachment(a.value, 'to-device'));
    expect(m1.ok && m1.value).toBe(a.value.sgt);
    if (m1.ok) dmaBufUnmapAttachment(a.value, m1.value, 'to-device');
    expect(state.pins).toBe(1);
    run(dmaBufDetach(dmabuf, a.value));
    expect(state.events.slice(2)).toEqual(['unmap nic bidirectional', 'unpin nic', 'detach nic']);
    expect(w.warnings).toEqual([]);
  });

  it('newest: the same importer pins on every map, under the lock, and unpins on unmap', () => {
    const { w, dmabuf, state } = setup('newest', { dynamic: true });
    const a = attachStatic(dmabuf, 'nic');
    if (!a.ok) throw new Error();
    expect(state.events).toEqual([]);
    const m = run(dmaBufMapAttachmentUnlocked(a.value, 'from-device'));
    expect(state.pins).toBe(1);
    if (m.ok) run(dmaBufUnmapAttachmentUnlocked(a.value, m.value, 'from-device'));
    expect(state.events).toEqual(['pin nic', 'map nic from-device', 'unmap nic from-device', 'unpin nic']);
    expect(w.warnings).toEqual([]);
  });

  it('6.1 cache_sgt_mapping: a second map in another direction is EBUSY', () => {
    const { dmabuf } = setup('6.1', { cacheSgt: true });
    const a = attachStatic(dmabuf, 'dev');
    if (!a.ok) throw new Error();
    const m = run(dmaBufMapAttachment(a.value, 'to-device'));
    expect(m.ok && run(dmaBufMapAttachment(a.value, 'to-device'))).toEqual(m);
    expect(run(dmaBufMapAttachment(a.value, 'from-device'))).toMatchObject({ ok: false, errno: 'EBUSY' });
  });

  it('dma_buf_pin is for dynamic attachments, under the lock', () => {
    const { w, dmabuf, state } = setup('newest', { dynamic: true });
    const s = attachStatic(dmabuf, 'static');
    const d = run(dmaBufDynamicAttach(dmabuf, dev('dyn'), importer));
    if (!s.ok || !d.ok) throw new Error();
    run(dmaBufPin(s.value));
    run(dmaResvLock(dmabuf.resv, null));
    expect(run(dmaBufPin(d.value)).ok).toBe(true);
    dmaResvUnlock(dmabuf.resv);
    expect(state.pins).toBe(2);
    expect(w.warnings.map((x) => [x.message, x.call])).toEqual([
      ['WARN_ON(!attach->importer_ops)', 'dma_buf_pin(attach=static:mock)'],
      ['WARN_ON(debug_locks && !lockdep_is_held(&obj->lock.base))', 'dma_buf_pin(attach=static:mock)'],
    ]);
  });
});

describe('map locking rules', () => {
  it.each([
    ['6.1', 0],
    ['newest', 2],
  ] as const)(
    '%s: a static importer of a static exporter mapping without the lock: %i warnings',
    (profile, n) => {
      const { w, dmabuf } = setup(profile);
      const a = attachStatic(dmabuf, 'dev');
      if (!a.ok) throw new Error();
      const m = run(dmaBufMapAttachment(a.value, 'bidirectional'));
      if (m.ok) dmaBufUnmapAttachment(a.value, m.value, 'bidirectional');
      expect(w.warnings.length).toBe(n);
    },
  );
});

/** Add an unsignaled fence with `usage` to the dma-buf's resv; it signals at `atNs`. */
function fenceAt(w: DmaBufWorld, dmabuf: DmaBuf, usage: DmaResvUsage, atNs: number): void {
  const f = mockFenceNewContext(w);
  run(dmaResvLock(dmabuf.resv, null));
  dmaResvReserveFences(dmabuf.resv, 1);
  dmaResvAddFence(dmabuf.resv, f, usage);
  dmaResvUnlock(dmabuf.resv);
  w.engine.schedule(atNs, () => void dmaFenceSignal(f));
}

describe('fences', () => {
  it('a static importer waits for KERNEL fences before its mapping is returned; a dynamic one does not', () => {
    const { w, dmabuf } = setup('newest');
    fenceAt(w, dmabuf, 'kernel', 100);
    fenceAt(w, dmabuf, 'write', 500);
    const done: Record<string, number> = {};
    // The static importer waits with the resv lock held, so an importer arriving after it waits too.
    const order = [
      ['dynamic', importer],
      ['static', null],
      ['late', importer],
    ] as const;
    for (const [name, ops] of order) {
      kthreadRun(
        w,
        name,
        (function* () {
          const a = yield* dmaBufDynamicAttach(dmabuf, dev(name), ops);
          if (!a.ok) throw new Error(a.detail);
          const m: KResult<SgTable> = yield* dmaBufMapAttachmentUnlocked(a.value, 'to-device');
          expect(m.ok).toBe(true);
          done[name] = w.engine.nowNs;
        })(),
      );
    }
    w.engine.run();
    expect(done).toEqual({ dynamic: 0, static: 100, late: 100 });
  });

  it('begin_cpu_access: a writer waits for readers too, a reader only for writers', () => {
    const { w, dmabuf } = setup('newest');
    fenceAt(w, dmabuf, 'write', 100);
    fenceAt(w, dmabuf, 'read', 300);
    fenceAt(w, dmabuf, 'bookkeep', 900);
    const done: Partial<Record<DmaDirection, number>> = {};
    for (const dir of ['from-device', 'to-device'] as const) {
      kthreadRun(
        w,
        dir,
        (function* () {
          expect((yield* dmaBufBeginCpuAccess(dmabuf, dir)).ok).toBe(true);
          done[dir] = w.engine.nowNs;
        })(),
      );
    }
    w.engine.run();
    expect(done).toEqual({ 'from-device': 100, 'to-device': 300 });
  });
});

describe('DMA_API_DEBUG page alignment', () => {
  it.each(['6.1', 'newest'] as const)('%s: unaligned segments', (profile) => {
    const { w, dmabuf, state } = setup(profile, { unaligned: true }, { dmaApiDebug: true });
    const a = attachStatic(dmabuf, 'dev');
    if (!a.ok) throw new Error();
    run(dmaResvLock(dmabuf.resv, null));
    const m = run(dmaBufMapAttachment(a.value, 'to-device'));
    dmaResvUnlock(dmabuf.resv);
    expect(w.log[0]).toBe('dma_buf_map_attachment: addr 100080 or len 1000 is not page aligned!');
    if (profile === '6.1') expect(m.ok).toBe(true);
    else {
      expect(m).toMatchObject({ ok: false, errno: 'EINVAL' });
      expect(state.events).toEqual(['map dev to-device', 'unmap dev to-device']);
    }
  });
});

describe.each(['6.1', 'newest'] as DmaBufProfile[])('move notify, invalidate and revoke on %s', (profile) => {
  it('notifies dynamic importers under the lock; revocation waits for fences and unmaps', () => {
    const { w, dmabuf, state } = setup(profile, { dynamic: true });
    const notified: string[] = [];
    let mapped: { a: DmaBufAttachment; sgt: SgTable } | null = null;
    const ops: DmaBufAttachOps = {
      allow_peer2peer: true,
      move_notify: (a) => void notified.push(a.dev.name),
      invalidate_mappings: (a) => void notified.push(a.dev.name),
    };
    fenceAt(w, dmabuf, 'bookkeep', 200);
    let revokedAt = -1;
    kthreadRun(
      w,
      'importer',
      (function* () {
        const a = yield* dmaBufDynamicAttach(dmabuf, dev('rdma'), ops);
        if (!a.ok) throw new Error(a.detail);
        const m = yield* dmaBufMapAttachmentUnlocked(a.value, 'bidirectional');
        if (m.ok) mapped = { a: a.value, sgt: m.value };
        while (notified.length === 0) yield sleep(50);
        yield sleep(400); // the importer takes its time to drop the mapping
        yield* dmaBufUnmapAttachmentUnlocked(a.value, m.ok ? m.value : (m as never), 'bidirectional');
      })(),
    );
    kthreadRun(
      w,
      'exporter',
      (function* () {
        yield sleep(10);
        yield* dmaBufRevoke(dmabuf, () => {
          state.revoked = true;
        });
        revokedAt = w.engine.nowNs;
      })(),
    );
    w.engine.run();
    expect(mapped).not.toBeNull();
    expect(notified).toEqual(['rdma']);
    expect(revokedAt).toBe(450); // notified at 10, seen at 50, unmapped 400 later
    expect(run(dmaBufMapAttachmentUnlocked(mapped!.a, 'bidirectional'))).toMatchObject({ errno: 'ENODEV' });
    run(dmaBufInvalidateMappings(dmabuf));
    expect(w.warnings.map((x) => x.func)).toEqual([
      profile === '6.1' ? 'dma_buf_move_notify' : 'dma_buf_invalidate_mappings',
    ]);
  });
});
