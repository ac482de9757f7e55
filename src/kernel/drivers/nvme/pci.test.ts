import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, MiB, physAddr } from '../../../hw/addr.js';
import { SparseMemory } from '../../../hw/memory/sparse-memory.js';
import { type Bio, bioAddPage, bioAlloc } from '../../block/bio.js';
import { submitBio } from '../../block/blk-mq.js';
import { blkdevDirectIO, type DioResult } from '../../block/fops.js';
import { iovIterInit } from '../../block/iov-iter.js';
import type { IommuDefaultMode } from '../../dma/dma-context.js';
import { dmaTestKernel, fnOf, TB_ROOT_PORT, TB_SWITCH_A, TB_SWITCH_B } from '../../dma/dma-testbed.js';
import type { IommuDmaSetup } from '../../iommu/dma-iommu-setup.js';
import type { Kernel } from '../../kernel.js';
import { virtToPfn } from '../../mm/direct-map.js';
import { pfnToPage } from '../../mm/page.js';
import {
  copyFromUser,
  copyToUser,
  doMmap,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  type MmStruct,
  mmAlloc,
  PROT_READ,
  PROT_WRITE,
  type UserAddr,
} from '../../mm/vma.js';
import { pciAllocP2pmem } from '../../pci/p2pdma-alloc.js';
import { p2pmemSysfsRead } from '../../pci/p2pdma-sysfs.js';
import { p2pmemAllocateOpen } from '../../pci/p2pmem-mmap.js';
import type { KernelVersion } from '../../profile.js';
import { NVME_CMD_READ } from './nvme-defs.js';
import { NvmeTestCtrl } from './nvme-testctrl.js';
import { type NvmeDev, nvmeProbe } from './pci.js';

const PAGE = 4096;

/** A testbed kernel with a test controller on each switch endpoint; B has a 16 MiB CMB at BAR0 + 16 MiB. */
function world(
  iommu: IommuDefaultMode = 'off',
  hostBridgeId?: [number, number],
  version: KernelVersion = 'newest',
) {
  const k = dmaTestKernel({ iommu, version, ...(hostBridgeId ? { machine: { hostBridgeId } } : {}) });
  // BAR 0 of every endpoint answers memory accesses (the CMB lives there).
  for (const f of k.machine.functions) {
    const b = f.bars.find((x) => x.index === 0 && x.kind === 'mem64');
    if (b) k.dma.memoryMap!.add(b.cpuStart, new SparseMemory(`${f.name} BAR0`, 'bar', b.size));
  }
  const unit = (k.dma.iommu as IommuDmaSetup | null)?.unit ?? null;
  const ctrls = new Map<string, NvmeTestCtrl>();
  const devs = new Map<string, NvmeDev>();
  const names = [TB_SWITCH_A, TB_SWITCH_B, TB_ROOT_PORT];
  names.forEach((bdf, i) => {
    const ctrl = new NvmeTestCtrl({
      schedule: (ns, fn) => k.engine.schedule(ns, fn),
      nsBytes: 8 * Number(MiB),
      mdts: 5,
      ...(bdf === TB_SWITCH_B ? { cmb: { bar: 0, sizeBytes: 16 * Number(MiB), offsetMiB: 16 } } : {}),
      dma: (kind, addr, buf, _purpose, done) => {
        // Peer BARs are reached below the root complex (the switch routes them): no translation.
        const peer = k.machine.functions.some((f) =>
          f.bars.some((b) => addr >= b.busStart && addr < b.busStart + b.size),
        );
        let ranges: { phys: bigint; len: number }[] = [{ phys: addr, len: buf.length }];
        if (unit && !peer) {
          const t = unit.translate(bdf, dmaAddr(addr), bytes(buf.length), kind);
          if (!t.ok) return k.engine.schedule(100, () => done(false));
          ranges = t.ranges.map((r) => ({ phys: r.phys, len: Number(r.len) }));
        }
        let off = 0;
        for (const r of ranges) {
          const piece = buf.subarray(off, off + r.len);
          if (kind === 'read') piece.set(k.dma.memory.read(physAddr(r.phys), r.len));
          else k.dma.memory.write(physAddr(r.phys), piece);
          off += r.len;
        }
        k.engine.schedule(100, () => done(true));
      },
    });
    ctrls.set(bdf, ctrl);
    const p = nvmeProbe(k, fnOf(k, bdf), ctrl.port(), `nvme${i}`);
    devs.set(bdf, p.dev);
  });
  k.engine.run();
  const mm = mmAlloc(k.mm, 'fio', k.dma.memory);
  return { k, ctrls, devs, mm };
}

function dio(
  k: Kernel,
  d: NvmeDev,
  mm: MmStruct,
  read: boolean,
  buf: UserAddr,
  len: number,
  pos = 0,
): DioResult {
  let res: DioResult | null = null;
  blkdevDirectIO(d.disk!, { pos, complete: (r) => (res = r) }, iovIterInit(mm, read, [{ base: buf, len }]));
  k.engine.run();
  if (res === null) throw new Error('I/O never completed');
  return res;
}

function anon(mm: MmStruct, len: number): UserAddr {
  const r = doMmap(mm, BigInt(len), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, null);
  if (!r.ok) throw new Error(r.detail);
  return r.value;
}

const pattern = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

describe('nvme probe', () => {
  it('brings the controller up, creates nvme<N>n1 with the kernel limits, and registers the CMB', () => {
    const { k, devs } = world();
    const b = devs.get(TB_SWITCH_B)!;
    expect(b.state).toBe('live');
    expect(b.disk!.name).toBe('nvme1n1');
    expect(b.disk!.limits).toMatchObject({
      maxHwSectors: 256,
      logicalBlockSize: 512,
      virtBoundaryMask: 4095,
      pciP2pdma: true,
    });
    expect(b.cmbSize).toBe(16n * MiB);
    expect(k.log.lines.map((l) => l.text)).toContain(
      `nvme ${TB_SWITCH_B}: added peer-to-peer DMA memory 0x38041000000-0x38041ffffff`,
    );
    expect(p2pmemSysfsRead(k, fnOf(k, TB_SWITCH_B), 'published')).toEqual({ ok: true, value: '1\n' });
    expect(devs.get(TB_SWITCH_A)!.cmbSize).toBe(0n);
  });
});

describe.each(['off', 'strict'] as const)('nvme I/O with the IOMMU %s', (iommu) => {
  it('writes and reads back 256 KiB of anonymous memory (PRP lists, two requests)', () => {
    const { k, devs, mm, ctrls } = world(iommu);
    const d = devs.get(TB_SWITCH_A)!;
    const src = anon(mm, 256 * 1024);
    const data = pattern(256 * 1024, 7);
    copyToUser(mm, src, data);
    expect(dio(k, d, mm, false, src, data.length, 4096)).toEqual({ ok: true, bytes: data.length });
    expect(
      Buffer.from(ctrls.get(TB_SWITCH_A)!.ns.readBytes(4096, data.length)).equals(Buffer.from(data)),
    ).toBe(true);
    const dst = anon(mm, 256 * 1024);
    expect(dio(k, d, mm, true, dst, data.length, 4096)).toEqual({ ok: true, bytes: data.length });
    const back = copyFromUser(mm, dst, data.length);
    expect(back.ok && Buffer.from(back.value).equals(Buffer.from(data))).toBe(true);
    expect(
      ctrls
        .get(TB_SWITCH_A)!
        .commands.filter((c) => c.qid === 1)
        .map((c) => c.status),
    ).toEqual([0, 0, 0, 0]);
    expect(k.dma.debug.entries(k.dma.devices.get(fnOf(k, TB_SWITCH_A).index)!).length).toBeGreaterThan(0); // rings only
    expect(k.dma.debug.reports).toEqual([]);
  });
});

describe('nvme P2P', () => {
  it('reads from one controller straight into the CMB of its switch peer (bus addresses, SGL)', () => {
    const { k, devs, mm, ctrls } = world('strict');
    const a = ctrls.get(TB_SWITCH_A)!;
    a.ns.write(0, pattern(MiB_N, 3));
    const f = p2pmemAllocateOpen(k, fnOf(k, TB_SWITCH_B));
    if (!f.ok) throw new Error(f.detail);
    const buf = doMmap(mm, BigInt(MiB_N), PROT_READ | PROT_WRITE, MAP_SHARED, f.value);
    if (!buf.ok) throw new Error(buf.detail);
    expect(dio(k, devs.get(TB_SWITCH_A)!, mm, true, buf.value, 128 * 1024)).toEqual({
      ok: true,
      bytes: 128 * 1024,
    });
    const got = copyFromUser(mm, buf.value, 128 * 1024);
    expect(got.ok && Buffer.from(got.value).equals(Buffer.from(a.ns.readBytes(0, 128 * 1024)))).toBe(true);
    const cmd = a.commands.find((c) => c.opcode === NVME_CMD_READ)!;
    expect(cmd.status).toBe(0);
  });

  it('P2P the kernel refuses fails with EINVAL before anything reaches the controller', () => {
    const { k, devs, mm, ctrls } = world('off', [0x8086, 0x1234]);
    const f = p2pmemAllocateOpen(k, fnOf(k, TB_SWITCH_B));
    if (!f.ok) throw new Error(f.detail);
    const buf = doMmap(mm, 64n * 1024n, PROT_READ | PROT_WRITE, MAP_SHARED, f.value);
    if (!buf.ok) throw new Error(buf.detail);
    const rp = devs.get(TB_ROOT_PORT)!;
    expect(dio(k, rp, mm, true, buf.value, 64 * 1024)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ctrls.get(TB_ROOT_PORT)!.commands.filter((c) => c.qid === 1)).toEqual([]);
    expect(k.log.lines.at(-1)!.text).toMatch(
      /^invalid error, dev nvme2n1, sector 0 op 0x0:\(READ\) flags 0x10004000 phys_seg 1 prio class 0$/,
    );
  });
});

describe('nvme on Linux 6.1 (scatterlist mapping)', () => {
  it('reads and writes anonymous memory', () => {
    const { k, devs, mm, ctrls } = world('strict', undefined, '6.1');
    const d = devs.get(TB_SWITCH_A)!;
    const data = pattern(64 * 1024, 9);
    const src = anon(mm, data.length);
    copyToUser(mm, src, data);
    expect(dio(k, d, mm, false, src, data.length)).toEqual({ ok: true, bytes: data.length });
    expect(Buffer.from(ctrls.get(TB_SWITCH_A)!.ns.readBytes(0, data.length)).equals(Buffer.from(data))).toBe(
      true,
    );
  });

  it('an in-kernel bio into P2P memory the device cannot reach fails with EREMOTEIO (BLK_STS_TARGET)', () => {
    const { k, devs } = world('off', [0x8086, 0x1234], '6.1');
    const cmb = pciAllocP2pmem(k, fnOf(k, TB_SWITCH_B), 64n * 1024n)!;
    const rp = devs.get(TB_ROOT_PORT)!;
    const bio: Bio = bioAlloc(rp.disk!, 16, 'read');
    for (let i = 0; i < 16; i++) bioAddPage(bio, pfnToPage(k.mm, virtToPfn(cmb) + i)!, PAGE, 0);
    let status = '';
    bio.endIo = (b) => (status = b.status);
    submitBio(rp.disk!, bio);
    k.engine.run();
    expect(status).toBe('target');
    expect(k.log.lines.at(-1)!.text).toBe(
      'critical target error, dev nvme2n1, sector 0 op 0x0:(READ) flags 0x10004000 phys_seg 1 prio class 0',
    );
  });
});

const MiB_N = Number(MiB);
