import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { GiB } from '../addr.js';
import { attachDmaChecker } from '../fabric/dma-checker.js';
import type { SwitchBoxOptions } from '../fabric/test-machines.js';
import type { NvmeOptions } from './nvme.js';
import { encodePrpList, encodeSglDesc, encodeSqe, nvmeReadl, type SqeFields } from './nvme-host.js';
import * as R from './nvme-regs.js';
import {
  ACQ,
  ASQ,
  BUF,
  createIoQueues as create,
  IOCQ,
  IOSQ,
  makeRig,
  pattern,
  type Rig,
  rw,
  same,
  sc,
} from './nvme-test-rig.js';

function newSim() {
  const e = new Engine();
  return { sim: { flows: new FlowModel(e), linkRate: pcieLinkRate }, run: () => e.run() };
}
const rig = (o: NvmeOptions = {}, m: SwitchBoxOptions = {}, sq = 32, cq = sq): Rig =>
  makeRig(newSim(), o, m, sq, cq);
const createIoQueues = (r: Rig, sqBase?: bigint): void => expect(create(r, sqBase)).toEqual([0, 0]);

describe('NVMe controller: registers and admin queue', () => {
  it('becomes ready after CC.EN and shows its capabilities', () => {
    const r = rig();
    expect(nvmeReadl(r.fab, r.nvme, R.NVME_REG_CSTS) & R.NVME_CSTS_RDY).toBe(1);
    const capLo = nvmeReadl(r.fab, r.nvme, R.NVME_REG_CAP);
    const capHi = nvmeReadl(r.fab, r.nvme, R.NVME_REG_CAP + 4);
    expect(capLo & 0xffff).toBe(1023); // MQES
    expect((capHi >>> 25) & 1).toBe(1); // CMBS
    expect(nvmeReadl(r.fab, r.nvme, R.NVME_REG_VS)).toBe(0x00010400);
  });
  it('Identify Controller lands in the host buffer, split over two PRP pages', () => {
    const r = rig();
    r.poke(BUF + 0x3000n, new Uint8Array(0x800).fill(0xff));
    const c = r.cmd(r.admin, {
      opc: R.NVME_ADMIN_IDENTIFY,
      cid: 7,
      prp1: BUF + 0x800n,
      prp2: BUF + 0x3000n,
      cdw: [1],
    });
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({ cid: 7, sqid: 0, sqhd: 1, status: { sct: 0, sc: 0, dnr: false } });
    const first = r.peek(BUF + 0x800n, 0x800);
    const second = r.peek(BUF + 0x3000n, 0x800);
    expect(new DataView(first.buffer).getUint16(0, true)).toBe(r.nvme.fn.vendor);
    expect(Buffer.from(first.subarray(24, 46)).toString('latin1')).toBe('dmasim NVMe controller');
    expect([first[512], first[513]]).toEqual([0x66, 0x44]); // SQES, CQES
    expect(second.every((b) => b === 0)).toBe(true); // the second page was written (it held 0xff)
    expect(r.irqs).toEqual([0]);
  });
  it('Identify Namespace reports the size and the LBA format', () => {
    const r = rig({ lbaBytes: 4096, namespaceBytes: GiB });
    const c = r.cmd(r.admin, { opc: R.NVME_ADMIN_IDENTIFY, cid: 1, nsid: 1, prp1: BUF, cdw: [0] });
    expect(sc(c)).toEqual([0, 0]);
    const id = r.peek(BUF, 4096);
    expect(new DataView(id.buffer).getBigUint64(0, true)).toBe(GiB / 4096n);
    expect(id[130]).toBe(12);
    expect(sc(r.cmd(r.admin, { opc: R.NVME_ADMIN_IDENTIFY, cid: 2, nsid: 2, prp1: BUF, cdw: [0] }))).toEqual([
      0, 0x0b,
    ]);
  });
  it('refuses bad queue creation with the specified status codes', () => {
    const r = rig();
    const create = (opc: number, cdw10: number, cdw11: number, prp1 = IOCQ) =>
      sc(r.cmd(r.admin, { opc, cid: 1, prp1, cdw: [cdw10, cdw11] }));
    expect(create(R.NVME_ADMIN_CREATE_SQ, (63 << 16) | 1, (1 << 16) | 1)).toEqual([1, R.NVME_SC_CQ_INVALID]);
    expect(create(R.NVME_ADMIN_CREATE_CQ, (63 << 16) | 0, 1)).toEqual([1, R.NVME_SC_QID_INVALID]);
    expect(create(R.NVME_ADMIN_CREATE_CQ, (4096 << 16) | 1, 1)).toEqual([1, R.NVME_SC_QUEUE_SIZE]);
    expect(create(R.NVME_ADMIN_CREATE_CQ, (63 << 16) | 1, 0)).toEqual([0, R.NVME_SC_INVALID_FIELD]);
    expect(create(R.NVME_ADMIN_CREATE_CQ, (63 << 16) | 1, (99 << 16) | 3)).toEqual([
      1,
      R.NVME_SC_INVALID_VECTOR,
    ]);
    expect(create(R.NVME_ADMIN_CREATE_CQ, (63 << 16) | 1, 3, IOCQ + 0x10n)).toEqual([
      0,
      R.NVME_SC_INVALID_FIELD,
    ]);
    expect(sc(r.cmd(r.admin, { opc: 0x7f, cid: 9 }))).toEqual([0, R.NVME_SC_INVALID_OPCODE]);
    createIoQueues(r);
    expect(sc(r.cmd(r.admin, { opc: R.NVME_ADMIN_DELETE_CQ, cid: 3, cdw: [1] }))).toEqual([
      1,
      R.NVME_SC_INVALID_QUEUE_DELETION,
    ]);
  });
  it('flips the phase tag on every wrap of a small admin queue', () => {
    const r = rig({}, {}, 4);
    for (let i = 0; i < 10; i++) {
      const c = r.cmd(r.admin, {
        opc: R.NVME_ADMIN_GET_FEATURES,
        cid: 100 + i,
        cdw: [R.NVME_FEAT_NUM_QUEUES],
      });
      expect(c.map((x) => [x.cid, x.status.sc, x.result])).toEqual([[100 + i, 0, (63 << 16) | 63]]);
    }
    // Ten entries through a four-entry ring: the head is at 2 after two wraps, the phase back at 1.
    expect([r.admin.cqHead, r.admin.phase]).toEqual([2, 1]);
  });
  it('holds completions while the completion queue is full, and posts them once the host frees room', () => {
    const r = rig({}, {}, 8, 2); // a 2-entry CQ holds one completion
    for (let i = 0; i < 3; i++)
      r.admin.submit(encodeSqe({ opc: R.NVME_ADMIN_GET_FEATURES, cid: i, cdw: [7] }));
    r.run();
    expect(r.admin.reap().map((c) => c.cid)).toEqual([0]);
    r.run();
    expect(r.admin.reap().map((c) => c.cid)).toEqual([1]);
    r.run();
    expect(r.admin.reap().map((c) => c.cid)).toEqual([2]);
  });
});

describe('NVMe controller: I/O with PRPs and SGLs', () => {
  it('writes through a PRP list and reads back through a chained SGL, byte-exactly', () => {
    const r = rig();
    const checker = attachDmaChecker(r.fab);
    createIoQueues(r);
    // 64 KiB from PRP1 at an offset, then 16 scattered pages listed in a PRP list that spills onto a
    // second list page (the first list page starts 16 bytes before its end).
    const len = 16 * 4096;
    const data = pattern(len, 3);
    const pages = Array.from({ length: 17 }, (_, i) => BUF + BigInt(i * 3) * 0x1000n);
    let at = 0;
    r.poke(pages[0]! + 0xe00n, data.subarray(0, 0x200));
    at = 0x200;
    for (const p of pages.slice(1)) {
      const n = Math.min(4096, len - at);
      r.poke(p, data.subarray(at, at + n));
      at += n;
    }
    const list1 = BUF + 0x100000n - 16n;
    const list2 = BUF + 0x200000n;
    r.poke(list1, encodePrpList([pages[1]!, list2]));
    r.poke(list2, encodePrpList(pages.slice(2)));
    const w = r.cmd(r.io, rw(R.NVME_CMD_WRITE, 1, 8, 128, { prp1: pages[0]! + 0xe00n, prp2: list1 }));
    expect(sc(w)).toEqual([0, 0]);
    expect(same(r.nvme.storage.readBytes(8 * 512, len), data)).toBe(true);
    // Read it back into three buffers described by an SGL: Segment -> [data, data, Last Segment] -> [data].
    const out = [BUF + 0x400000n, BUF + 0x500000n + 7n, BUF + 0x600000n];
    const lens = [10000, 30000, len - 40000];
    const seg2 = BUF + 0x700000n;
    const seg1 = BUF + 0x710000n;
    r.poke(seg2, encodeSglDesc(out[2]!, lens[2]!, R.NVME_SGL_FMT_DATA_DESC));
    r.poke(
      seg1,
      Buffer.concat([
        encodeSglDesc(out[0]!, lens[0]!, R.NVME_SGL_FMT_DATA_DESC),
        encodeSglDesc(out[1]!, lens[1]!, R.NVME_SGL_FMT_DATA_DESC),
        encodeSglDesc(seg2, 16, R.NVME_SGL_FMT_LAST_SEG_DESC),
      ]),
    );
    const sgl = encodeSglDesc(seg1, 48, R.NVME_SGL_FMT_SEG_DESC);
    const rd = r.cmd(r.io, rw(R.NVME_CMD_READ, 2, 8, 128, { flags: R.NVME_CMD_SGL_METABUF, sgl }));
    expect(sc(rd)).toEqual([0, 0]);
    const back = Buffer.concat(out.map((a, i) => r.peek(a, lens[i]!)));
    expect(same(back, data)).toBe(true);
    expect(checker.violations).toEqual([]);
    expect(r.irqs.filter((v) => v === 1)).toHaveLength(2);
  });
  it('round-trips on a 4096-byte-LBA namespace with PRP1 + PRP2 as two pages', () => {
    const r = rig({ lbaBytes: 4096 });
    createIoQueues(r);
    const data = pattern(8192, 9);
    r.poke(BUF, data.subarray(0, 4096));
    r.poke(BUF + 0x9000n, data.subarray(4096));
    expect(sc(r.cmd(r.io, rw(R.NVME_CMD_WRITE, 1, 5, 2, { prp1: BUF, prp2: BUF + 0x9000n })))).toEqual([
      0, 0,
    ]);
    expect(same(r.nvme.storage.readBytes(5 * 4096, 8192), data)).toBe(true);
    expect(
      sc(r.cmd(r.io, rw(R.NVME_CMD_READ, 2, 5, 2, { prp1: BUF + 0x20000n, prp2: BUF + 0x30000n }))),
    ).toEqual([0, 0]);
    expect(same(Buffer.concat([r.peek(BUF + 0x20000n, 4096), r.peek(BUF + 0x30000n, 4096)]), data)).toBe(
      true,
    );
  });
  it('reports PRP, SGL, range and namespace errors with their status codes', () => {
    const r = rig();
    createIoQueues(r);
    const st = (f: SqeFields) => sc(r.cmd(r.io, f));
    expect(st(rw(R.NVME_CMD_READ, 1, 0, 8, { prp1: BUF + 2n }))).toEqual([0, R.NVME_SC_PRP_INVALID_OFFSET]);
    expect(st(rw(R.NVME_CMD_READ, 2, 0, 8, { prp1: BUF + 0x800n, prp2: BUF + 0x1200n }))).toEqual([
      0,
      R.NVME_SC_PRP_INVALID_OFFSET,
    ]);
    r.poke(BUF + 0x8000n, encodePrpList([BUF + 0x1000n, BUF + 0x2010n]));
    expect(st(rw(R.NVME_CMD_READ, 3, 0, 24, { prp1: BUF, prp2: BUF + 0x8000n }))).toEqual([
      0,
      R.NVME_SC_PRP_INVALID_OFFSET,
    ]);
    const sglRead = (cid: number, sgl: Uint8Array, nlb = 8) =>
      st(rw(R.NVME_CMD_READ, cid, 0, nlb, { flags: R.NVME_CMD_SGL_METABUF, sgl }));
    expect(sglRead(4, encodeSglDesc(BUF, 4000, R.NVME_SGL_FMT_DATA_DESC))).toEqual([
      0,
      R.NVME_SC_SGL_INVALID_DATA,
    ]);
    r.poke(
      BUF + 0x9000n,
      Buffer.concat([encodeSglDesc(BUF + 0xa000n, 16, R.NVME_SGL_FMT_SEG_DESC), encodeSglDesc(BUF, 4096, 0)]),
    );
    expect(sglRead(5, encodeSglDesc(BUF + 0x9000n, 32, R.NVME_SGL_FMT_SEG_DESC))).toEqual([
      0,
      R.NVME_SC_SGL_INVALID_COUNT,
    ]);
    r.poke(BUF + 0xb000n, encodeSglDesc(BUF + 0xa000n, 16, R.NVME_SGL_FMT_LAST_SEG_DESC));
    expect(sglRead(6, encodeSglDesc(BUF + 0xb000n, 16, R.NVME_SGL_FMT_LAST_SEG_DESC))).toEqual([
      0,
      R.NVME_SC_SGL_INVALID_LAST,
    ]);
    expect(sglRead(7, encodeSglDesc(BUF, 4096, R.NVME_SGL_FMT_BIT_BUCKET))).toEqual([
      0,
      R.NVME_SC_SGL_INVALID_TYPE,
    ]);
    const last = Number(r.nvme.nlb) - 4;
    expect(st(rw(R.NVME_CMD_READ, 8, last, 8, { prp1: BUF }))).toEqual([0, R.NVME_SC_LBA_RANGE]);
    expect(st({ ...rw(R.NVME_CMD_READ, 9, 0, 8, { prp1: BUF }), nsid: 2 })).toEqual([
      0,
      R.NVME_SC_INVALID_NS,
    ]);
    expect(st(rw(R.NVME_CMD_READ, 10, 0, 1024, { prp1: BUF }))).toEqual([0, R.NVME_SC_INVALID_FIELD]);
    expect(
      sc(r.cmd(r.admin, { opc: R.NVME_ADMIN_IDENTIFY, cid: 11, flags: R.NVME_CMD_SGL_METABUF, cdw: [1] })),
    ).toEqual([0, R.NVME_SC_INVALID_FIELD]);
  });
  it('completes with Data Transfer Error when the IOMMU faults the data DMA, and moves nothing', () => {
    const r = rig({}, { iommu: true });
    const unit = r.fab.iommuFor(r.nvme.fn)!;
    const d = unit.allocDomain('paging')!;
    unit.attach(r.nvme.fn.name, d);
    // Identity-map the queues only: the data buffer stays unmapped.
    for (const a of [ASQ, IOSQ, IOCQ]) unit.map(d, a, a, 4096n, 16, { read: true, write: true });
    unit.map(d, ACQ, ACQ, 0x1000n, 1, { read: true, write: true });
    createIoQueues(r);
    r.nvme.storage.fill(0, 4096, 0x11);
    const c = r.cmd(r.io, rw(R.NVME_CMD_WRITE, 1, 0, 8, { prp1: BUF }));
    expect(sc(c)).toEqual([0, R.NVME_SC_DATA_XFER_ERROR]);
    expect(c[0]!.status.dnr).toBe(false);
    expect(r.nvme.storage.readBytes(0, 4)).toEqual(new Uint8Array(4).fill(0x11));
    expect(unit.faults.at(-1)).toMatchObject({
      requester: r.nvme.fn.name,
      access: 'read',
      reason: 'not-present',
    });
  });
});
