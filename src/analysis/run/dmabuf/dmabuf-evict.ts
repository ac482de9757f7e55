// The dmabuf-evict run: a GPU exports a VRAM buffer to an RDMA NIC, the NIC streams it into host memory
// through a dynamic (ODP-like) MR, and memory pressure evicts the buffer to system memory mid-stream:
// move_notify fires, the NIC's MR is zapped after its in-flight reads drain, the NIC page-faults,
// re-maps onto the new placement (waiting for the move's copy) and finishes. Checked: every byte at the
// destination, and no NIC DMA to memory the buffer left after the move completed. Mirrors no kernel file.
//
//   t=0      export, attach, map (VRAM through the BAR), stream starts
//   t=at     another VRAM allocation does not fit -> eviction: move_notify -> zap, drain, unmap
//            -> copy VRAM -> GTT on the GPU's copy engine (KERNEL fence) -> old VRAM retired
//   ...      NIC page fault -> map (GTT pages, dma_map_sgtable) after the fence -> stream goes on

import { bytes, PAGE_SHIFT, PAGE_SIZE_N, physAddr } from '../../../hw/addr.js';
import { Gpu } from '../../../hw/devices/gpu.js';
import { Nic } from '../../../hw/devices/nic.js';
import type { Machine } from '../../../hw/pci.js';
import { dmaDeviceOf } from '../../../kernel/dma/dma-context.js';
import { DMA_BIT_MASK } from '../../../kernel/dma/dma-types.js';
import { dmaMapPhys, dmaSetMaskAndCoherent } from '../../../kernel/dma/mapping.js';
import { dmaResvLock, dmaResvUnlock } from '../../../kernel/dma-buf/dma-resv.js';
import { kthreadRun, runNonBlocking } from '../../../kernel/dma-buf/sched.js';
import {
  amdgpuBoCreate,
  amdgpuBoFree,
  type GpuBo,
  gpuDeviceInit,
  gpuResourcePhys,
  ttmBoValidate,
} from '../../../kernel/drivers/gpu/gpu-bo.js';
import { amdgpuGemPrimeExport } from '../../../kernel/drivers/gpu/gpu-dmabuf.js';
import { RetiredAccessChecker } from '../../../kernel/drivers/gpu/retired-checker.js';
import { type KernelOnFabric, kernelOnFabric } from '../../../kernel/drivers/kernel-on-fabric.js';
import {
  type Mlx5Mr,
  mlx5IbDeregMr,
  mlx5IbRegUserMrDmabuf,
  mlx5StreamFromMr,
  type StreamResult,
} from '../../../kernel/drivers/rdma/mlx5-mr.js';
import { note } from '../../../kernel/drivers/timeline.js';
import { allocPages } from '../../../kernel/mm/page-alloc.js';
import { Prng } from '../../../sim/prng.js';
import { sleep } from '../../../sim/task.js';
import { TopologyError } from '../../../topology/errors.js';
import {
  type DmabufRunBase,
  type DmabufRunConfig,
  dmaSpan,
  expectation,
  findFn,
  randomBytes,
  runTail,
  sameBytes,
  withSpans,
} from './dmabuf-run-common.js';
import type { DmabufEvictDoc, DmabufScenario } from './dmabuf-scenario-file.js';

/** The chunks that went through one mapping of the MR. */
export interface MappingUse {
  readonly mapping: number;
  readonly placement: string;
  readonly chunks: number;
  readonly bytes: number;
  readonly firstNs: number;
  readonly lastNs: number;
}

export interface DmabufEvictResult extends DmabufRunBase {
  readonly kind: 'dmabuf-evict';
  readonly exporter: string;
  readonly importer: string;
  readonly bufferBytes: number;
  readonly streamedBytes: number;
  readonly streamStatus: string;
  readonly placementBefore: string;
  readonly placementAfter: string;
  readonly evictions: number;
  readonly moves: number;
  readonly pageFaults: number;
  readonly mappings: readonly MappingUse[];
  /** NIC DMAs that reached memory the buffer had left (must be 0). */
  readonly accessesToOldLocation: number;
  readonly violations: readonly string[];
  readonly destinationVerified: boolean;
}

interface Parts {
  readonly w: KernelOnFabric;
  /** Kernel log lines printed during boot (the report starts after them). */
  readonly logMark: number;
  readonly bo: GpuBo;
  readonly data: Uint8Array;
  readonly nic: Nic;
  readonly ibdev: { name: string; dmaDevice: ReturnType<typeof dmaDeviceOf>; log: string[] };
  readonly dst: { phys: bigint; dma: ReturnType<typeof dmaMapPhys> };
}

/** Boot, make the buffer with seeded data, export it, and get the NIC and a destination ready. */
function setUp(machine: Machine, sc: DmabufScenario, doc: DmabufEvictDoc, cfg: DmabufRunConfig): Parts {
  const w = kernelOnFabric(machine, { version: cfg.kernel, iommu: cfg.iommu, seed: cfg.seed });
  const logMark = w.k.log.lines.length;
  const gpuFn = findFn(w, sc, doc.exporter, 'exporter');
  const nicFn = findFn(w, sc, doc.importer, 'importer');
  const gdev = gpuDeviceInit(w.k, new Gpu(w.fab, gpuFn), w.tl);
  const size = (doc.buffer + PAGE_SIZE_N - 1n) & ~(PAGE_SIZE_N - 1n);
  const bo = runNonBlocking(amdgpuBoCreate(gdev, 'bo0', size, 'vram'));
  if (!bo.ok)
    throw new TopologyError(sc.path || sc.name, `buffer of ${size} bytes: ${bo.errno} (${bo.detail})`);
  const data = randomBytes(new Prng(cfg.seed ^ 0xdb0f_e71c), Number(size));
  w.k.dma.memory.write(physAddr(gpuResourcePhys(gdev, bo.value.res)), data);
  const d = amdgpuGemPrimeExport(bo.value);
  if (!d.ok) throw new Error(`dma_buf_export: ${d.detail}`);
  const nicDma = dmaDeviceOf(w.k.dma, nicFn);
  dmaSetMaskAndCoherent(nicDma, DMA_BIT_MASK(64));
  const pfn = allocPages(w.k.mm, Number(size >> BigInt(PAGE_SHIFT)));
  if (pfn === null) throw new Error('no host pages for the destination');
  const phys = BigInt(pfn) << BigInt(PAGE_SHIFT);
  const dma = dmaMapPhys(nicDma, physAddr(phys), bytes(size), 'from-device');
  const ibdev = { name: doc.importer, dmaDevice: nicDma, log: [] as string[] };
  return { w, logMark, bo: bo.value, data, nic: new Nic(w.fab, nicFn), ibdev, dst: { phys, dma } };
}

/** The pressure allocation, and the optional move back. */
function scheduleEvents(p: Parts, doc: DmabufEvictDoc): void {
  const { w, bo } = p;
  const gdev = bo.gdev;
  let pressure: GpuBo | null = null;
  kthreadRun(
    w.world,
    'pressure',
    (function* () {
      yield sleep(doc.pressure.at);
      const free = gdev.vram.size - gdev.vram.used.reduce((a, u) => a + u.size, 0n);
      const size = doc.pressure.size ?? free + PAGE_SIZE_N;
      note(w.tl, 'app', 'memory pressure', `VRAM allocation of ${size} bytes (${free} free)`);
      const r = yield* amdgpuBoCreate(gdev, 'pressure', size, 'vram');
      note(w.tl, 'app', r.ok ? 'pressure allocation done' : `pressure allocation failed: ${r.errno}`);
      if (r.ok) pressure = r.value;
    })(),
  );
  if (!doc.moveBack) return;
  const at = doc.moveBack.at;
  kthreadRun(
    w.world,
    'move back',
    (function* () {
      yield sleep(at);
      if (pressure) amdgpuBoFree(pressure);
      yield* dmaResvLock(bo.resv, null);
      const v = yield* ttmBoValidate(bo, ['vram']);
      dmaResvUnlock(bo.resv);
      note(w.tl, 'app', v.ok ? 'moved back to VRAM' : `move back failed: ${v.errno}`);
    })(),
  );
}

/** Group the stream's chunks by the mapping that translated them. */
function mappingUse(res: StreamResult, placements: readonly string[]): MappingUse[] {
  const out = new Map<number, { chunks: number; bytes: number; firstNs: number; lastNs: number }>();
  for (const c of res.chunks) {
    const m = out.get(c.mapGen) ?? { chunks: 0, bytes: 0, firstNs: c.postNs, lastNs: c.doneNs };
    m.chunks++;
    if (c.status === 'success') m.bytes += c.len;
    m.lastNs = Math.max(m.lastNs, c.doneNs);
    out.set(c.mapGen, m);
  }
  return [...out].map(([mapping, m]) => ({ mapping, placement: placements[mapping] ?? '?', ...m }));
}

/** Run a dmabuf-evict scenario. @returns the result (throws only on bad input or a model bug). */
export function runDmabufEvict(
  machine: Machine,
  sc: DmabufScenario,
  cfg: DmabufRunConfig,
): DmabufEvictResult {
  const doc = sc.doc as DmabufEvictDoc;
  const p = setUp(machine, sc, doc, cfg);
  const { w, bo, data, logMark } = p;
  const placements: string[] = [];
  w.tl.listeners.push((e) => {
    if (e.what === 'map' && e.detail?.startsWith(`${bo.name} in `)) placements.push(e.detail.split(' ')[2]!);
  });
  const checker = new RetiredAccessChecker(w.fab, bo.gdev, [p.nic.fn.name]);
  const before = bo.res.domain;
  let result: StreamResult | null = null;
  let mr: Mlx5Mr | null = null;
  const len = data.length;
  kthreadRun(
    w.world,
    'rdma app',
    (function* () {
      const m = yield* mlx5IbRegUserMrDmabuf(p.ibdev, bo.dmabuf!, 0n, BigInt(len), 'odp', w.tl);
      if (!m.ok) {
        note(w.tl, 'app', `MR registration failed: ${m.errno}`, m.detail);
        return;
      }
      mr = m.value;
      note(w.tl, 'app', 'stream start', `${len} bytes`);
      result = yield* mlx5StreamFromMr(p.nic, m.value, 0n, p.dst.dma, len, {
        ...(doc.stream?.chunk !== undefined ? { chunkBytes: Number(doc.stream.chunk) } : {}),
        ...(doc.stream?.window !== undefined ? { window: doc.stream.window } : {}),
      });
      note(
        w.tl,
        'app',
        result.ok ? 'stream finished' : `stream failed: ${result.status}`,
        `${result.bytes} bytes`,
      );
      yield* mlx5IbDeregMr(m.value);
    })(),
  );
  scheduleEvents(p, doc);
  const t0 = w.engine.nowNs;
  w.engine.run();
  const res = result as StreamResult | null;
  const got = p.w.k.dma.memory.read(physAddr(p.dst.phys), len);
  const destOk = res?.ok === true && res.bytes === len && sameBytes(got, data);
  const evictions = w.tl.events.filter(
    (e) => e.what === 'evict' && e.detail?.startsWith(`${bo.name} `),
  ).length;
  const faults = (mr as Mlx5Mr | null)?.stats.faults ?? 0;
  const verified = destOk && checker.violations.length === 0 && w.world.warnings.length === 0;
  const x = doc.expect ?? {};
  const expectations = [
    expectation(
      'every byte streamed arrived intact',
      destOk,
      destOk ? `${len} bytes` : 'destination differs',
    ),
    expectation(
      'no DMA to the old location after the move',
      checker.violations.length === 0,
      `${checker.violations.length} access(es)`,
    ),
    ...(x.evictions !== undefined
      ? [expectation(`evictions: ${x.evictions}`, evictions === x.evictions, `${evictions}`)]
      : []),
    ...(x.pageFaults !== undefined
      ? [expectation(`NIC page faults: ${x.pageFaults}`, faults === x.pageFaults, `${faults}`)]
      : []),
  ];
  return {
    kind: 'dmabuf-evict',
    scenario: sc.name,
    machine: w.k.machine.name,
    ...cfg,
    verified,
    durationNs: w.engine.nowNs - t0,
    exporter: doc.exporter,
    importer: doc.importer,
    bufferBytes: len,
    streamedBytes: res?.bytes ?? 0,
    streamStatus: res?.status ?? 'not started',
    placementBefore: before,
    placementAfter: bo.res.domain,
    evictions,
    moves: bo.moves,
    pageFaults: faults,
    mappings: res ? mappingUse(res, placements) : [],
    accessesToOldLocation: checker.violations.length,
    violations: checker.violations,
    destinationVerified: destOk,
    ...runTail(w, logMark),
    timeline: withSpans(
      w.tl.events,
      (res ? mappingUse(res, placements) : []).map((m) =>
        dmaSpan(
          doc.importer,
          m.firstNs,
          m.lastNs,
          m.chunks,
          m.bytes,
          `read through mapping ${m.mapping} (${m.placement})`,
        ),
      ),
    ),
    expectations,
  };
}
