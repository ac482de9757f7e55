import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MiB, physAddr } from '../../hw/addr.js';
import { sparsePhysMemory } from '../dma/dma-context.js';
import { bootKernel } from '../kernel.js';
import { pfnToPage } from '../mm/page.js';
import {
  copyFromUser,
  doMmap,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  mmAlloc,
  PROT_READ,
  PROT_WRITE,
  type UserAddr,
  userAddr,
} from '../mm/vma.js';
import { pciP2pdmaAddResource } from '../pci/p2pdma-provider.js';
import { p2pMachine } from '../pci/p2pdma-testbed.js';
import { p2pmemAllocateOpen } from '../pci/p2pmem-mmap.js';
import { bioAddPage, bioAlloc, bioSegs, REQ_P2PDMA } from './bio.js';
import {
  BLK_DEF_MAX_SECTORS_CAP,
  blkMqAllocQueue,
  blkMqEndRequest,
  type QueueLimits,
  type Request,
  submitBio,
} from './blk-mq.js';
import type { BlkStatus } from './blk-status.js';
import { blkdevDirectIO, type DioResult } from './fops.js';
import { iovIterInit } from './iov-iter.js';

const PAGE = 4096;
const LIMITS: QueueLimits = {
  logicalBlockSize: 512,
  maxHwSectors: 2048,
  maxSectors: Math.min(2048, BLK_DEF_MAX_SECTORS_CAP),
  maxSegments: 128,
  maxSegmentSize: 0xffff_ffff,
  segBoundaryMask: 0xffff_ffffn,
  virtBoundaryMask: 4095,
  dmaAlignment: 3,
  pciP2pdma: true,
};

/** A kernel, a process, a P2P provider and a queue whose fake driver copies bytes after 1 µs. */
function world(limits: Partial<QueueLimits> = {}, depth = 8, fail: BlkStatus = 'ok') {
  const k = bootKernel(p2pMachine(), { version: 'newest' });
  const mem = sparsePhysMemory();
  const mm = mmAlloc(k.mm, 'dd', mem);
  const ep = k.machine.byName.get('0000:03:00.0')!;
  if (!pciP2pdmaAddResource(k, ep, 0, 4n * MiB, 0n).ok) throw new Error('no provider');
  const disk = new Uint8Array(8 * MiB_N);
  for (let i = 0; i < disk.length; i++) disk[i] = (i * 31 + (i >> 9)) & 0xff;
  const seen: Request[] = [];
  let inflight = 0;
  let maxInflight = 0;
  const q = blkMqAllocQueue({
    name: 'nvme0n1',
    limits: { ...LIMITS, ...limits },
    depth,
    capacitySectors: disk.length / 512,
    engine: k.engine,
    log: k.log,
    kmm: k.mm,
    ops: {
      queueRq(rq) {
        if (fail !== 'ok') return fail;
        seen.push(rq);
        maxInflight = Math.max(maxInflight, ++inflight);
        k.engine.schedule(1000, () => {
          let off = rq.sector * 512;
          for (const s of bioSegs(rq.bio)) {
            const phys = physAddr((BigInt(s.page.pfn) << 12n) + BigInt(s.offset));
            if (rq.op === 'read') mem.write(phys, disk.subarray(off, off + s.len));
            else disk.set(mem.read(phys, s.len), off);
            off += s.len;
          }
          inflight--;
          blkMqEndRequest(rq, 'ok');
        });
        return 'ok';
      },
    },
  });
  const anon = (bytes: number): UserAddr => {
    const r = doMmap(mm, BigInt(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, null);
    if (!r.ok) throw new Error(r.detail);
    return r.value;
  };
  const p2p = (bytes: number): UserAddr => {
    const f = p2pmemAllocateOpen(k, ep);
    if (!f.ok) throw new Error(f.detail);
    const r = doMmap(mm, BigInt(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, f.value);
    if (!r.ok) throw new Error(r.detail);
    return r.value;
  };
  const read = (buf: UserAddr, len: number, pos = 0): DioResult => {
    let res: DioResult | null = null;
    blkdevDirectIO(q, { pos, complete: (r) => (res = r) }, iovIterInit(mm, true, [{ base: buf, len }]));
    k.engine.run();
    if (res === null) throw new Error('the read never completed');
    return res;
  };
  return { k, mm, q, disk, seen, anon, p2p, read, stats: () => ({ maxInflight }) };
}
const MiB_N = Number(MiB);
const E = (errno: string) => ({ ok: false, errno });

describe('O_DIRECT read', () => {
  it('reads into anonymous memory byte for byte and unpins every page', () => {
    const w = world();
    const buf = w.anon(64 * 1024);
    expect(w.read(buf, 64 * 1024, 8192)).toEqual({ ok: true, bytes: 65536 });
    const got = copyFromUser(w.mm, buf, 65536);
    expect(got.ok && Buffer.from(got.value).equals(Buffer.from(w.disk.subarray(8192, 8192 + 65536)))).toBe(
      true,
    );
    const pfn = w.mm.pt.values().next().value!.pfn;
    expect(pfnToPage(w.k.mm, pfn)!.refcount).toBe(1);
  });

  it('returns EINVAL for a misaligned position or buffer and 0 for an empty read', () => {
    const w = world();
    const buf = w.anon(8192);
    expect(w.read(buf, 4096, 100)).toMatchObject(E('EINVAL'));
    expect(w.read(userAddr(buf + 2n), 4096)).toMatchObject(E('EINVAL'));
    expect(w.read(buf, 1000)).toMatchObject(E('EINVAL'));
    expect(w.read(buf, 0)).toEqual({ ok: true, bytes: 0 });
  });

  it('reads into P2P memory only when the queue advertises P2PDMA (else EREMOTEIO from GUP)', () => {
    const w = world();
    const buf = w.p2p(16 * PAGE);
    expect(w.read(buf, 16 * PAGE)).toEqual({ ok: true, bytes: 16 * PAGE });
    expect(w.seen[0]!.cmdFlags & REQ_P2PDMA).toBe(REQ_P2PDMA);
    const got = copyFromUser(w.mm, buf, 16 * PAGE);
    expect(got.ok && Buffer.from(got.value).equals(Buffer.from(w.disk.subarray(0, 16 * PAGE)))).toBe(true);
    const v = world({ pciP2pdma: false });
    expect(v.read(v.p2p(PAGE), PAGE)).toMatchObject(E('EREMOTEIO'));
  });

  it('never puts normal and P2P pages in one bio: a one-bio read comes back short', () => {
    const w = world();
    const p2p = w.p2p(4 * PAGE);
    const anon = w.anon(4 * PAGE); // placed right below the P2P mapping
    expect(anon + 4n * 4096n).toBe(p2p);
    expect(w.read(anon, 8 * PAGE)).toEqual({ ok: true, bytes: 4 * PAGE });
    expect(w.seen).toHaveLength(1);
    expect(w.seen[0]!.cmdFlags & REQ_P2PDMA).toBe(0);
  });

  it('a multi-bio read carries on across the boundary in a new bio', () => {
    const w = world();
    const p2p = w.p2p(256 * PAGE);
    const anon = w.anon(4 * PAGE);
    expect(anon + 4n * 4096n).toBe(p2p);
    expect(w.read(anon, 260 * PAGE)).toEqual({ ok: true, bytes: 260 * PAGE });
    const kinds = w.seen.map((r) => (r.cmdFlags & REQ_P2PDMA) !== 0);
    expect(kinds[0]).toBe(false);
    expect(kinds.slice(1).every((x) => x)).toBe(true);
  });

  it('splits a bio at max_sectors and completes the read once', () => {
    const w = world({ maxSectors: 128 });
    const buf = w.anon(256 * 1024);
    expect(w.read(buf, 256 * 1024)).toEqual({ ok: true, bytes: 256 * 1024 });
    expect(w.seen.map((r) => r.dataLen)).toEqual([65536, 65536, 65536, 65536]);
    expect(w.q.stats.splits).toBe(3);
  });

  it('keeps at most `depth` requests in flight', () => {
    const w = world({ maxSectors: 8 }, 2);
    expect(w.read(w.anon(64 * 1024), 64 * 1024)).toEqual({ ok: true, bytes: 65536 });
    expect(w.seen).toHaveLength(16);
    expect(w.stats().maxInflight).toBe(2);
  });

  it('reports a read past the end of the device as EIO with the kernel lines', () => {
    const w = world();
    expect(w.read(w.anon(PAGE), PAGE, 8 * MiB_N)).toMatchObject(E('EIO'));
    expect(w.k.log.lines.slice(-2).map((l) => l.text)).toEqual([
      'attempt to access beyond end of device',
      'nvme0n1: rw=0, sector=16384, nr_sectors = 8 limit=16384',
    ]);
  });

  it.each([
    ['inval', 'EINVAL', 'invalid'],
    ['target', 'EREMOTEIO', 'critical target'],
  ] as const)('a driver refusing with BLK_STS %s surfaces %s', (st, errno, word) => {
    const w = world({}, 8, st);
    expect(w.read(w.anon(PAGE), PAGE)).toMatchObject(E(errno));
    expect(w.k.log.lines.at(-1)!.text).toBe(
      `${word} error, dev nvme0n1, sector 0 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0`,
    );
  });
});

describe('bio_add_page', () => {
  it('merges contiguous pages and refuses a page of another pagemap', () => {
    const w = world();
    const bio = bioAlloc(w.q, 4, 'write');
    const ram = [0x100000, 0x100001].map((p) => pfnToPage(w.k.mm, p)!);
    expect(bioAddPage(bio, ram[0]!, PAGE, 0)).toBe(PAGE);
    expect(bioAddPage(bio, ram[1]!, PAGE, 0)).toBe(PAGE);
    expect(bio.vecs).toHaveLength(1);
    const p2pPfn = Number(w.k.mm.pgmaps.all()[0]!.firstPfn);
    expect(bioAddPage(bio, pfnToPage(w.k.mm, p2pPfn)!, PAGE, 0)).toBe(0);
    const p2pBio = bioAlloc(w.q, 4, 'read');
    expect(bioAddPage(p2pBio, pfnToPage(w.k.mm, p2pPfn)!, PAGE, 0)).toBe(PAGE);
    expect(p2pBio.opf & REQ_P2PDMA).toBe(REQ_P2PDMA);
    let done = false;
    bio.endIo = () => (done = true);
    submitBio(w.q, bio);
    w.k.engine.run();
    expect(done && bio.status === 'ok').toBe(true);
  });
});

describe('O_DIRECT over buffers that mix memory kinds (property)', () => {
  it('moves exactly the asked bytes, right, and never puts two memory kinds in one request', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ p2p: fc.boolean(), pages: fc.integer({ min: 1, max: 6 }) }), {
          minLength: 1,
          maxLength: 5,
        }),
        fc.integer({ min: 0, max: 7 }),
        (spans, skipSectors) => {
          const w = world();
          // Map the spans top-down so they end up contiguous in the address space, lowest first.
          const bases = [...spans]
            .reverse()
            .map((s) => (s.p2p ? w.p2p(s.pages * PAGE) : w.anon(s.pages * PAGE)));
          const start = bases.at(-1)!;
          const total = spans.reduce((n, s) => n + s.pages * PAGE, 0) - skipSectors * 512;
          const buf = userAddr(start + BigInt(skipSectors * 512));
          let done = 0;
          while (done < total) {
            const r = w.read(userAddr(buf + BigInt(done)), total - done, done);
            expect(r.ok).toBe(true);
            if (!r.ok) return;
            done += r.bytes;
          }
          const got = copyFromUser(w.mm, buf, total);
          expect(got.ok && Buffer.from(got.value).equals(Buffer.from(w.disk.subarray(0, total)))).toBe(true);
          for (const rq of w.seen) {
            const kinds = new Set(bioSegs(rq.bio).map((s) => s.page.pgmap === null));
            expect(kinds.size).toBe(1);
          }
        },
      ),
      { numRuns: 25, seed: 42 },
    );
  });
});
