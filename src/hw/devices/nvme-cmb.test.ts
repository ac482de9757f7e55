import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { bytes, dmaAddr, MiB } from '../addr.js';
import { fabricDma } from '../fabric/data-path.js';
import type { NvmeOptions } from './nvme.js';
import { encodePrpList, encodeSglDesc, NvmeHostQueue, nvmeReadl, nvmeWritel } from './nvme-host.js';
import * as R from './nvme-regs.js';
import {
  BUF,
  createIoQueues as create,
  IOCQ,
  makeRig,
  pattern,
  RAM,
  type Rig,
  rw,
  same,
  sc,
} from './nvme-test-rig.js';

function rig(o: NvmeOptions = {}): Rig {
  const e = new Engine();
  return makeRig({ sim: { flows: new FlowModel(e), linkRate: pcieLinkRate }, run: () => e.run() }, o);
}
const createIoQueues = (r: Rig, sqBase?: bigint): void => expect(create(r, sqBase)).toEqual([0, 0]);

describe('NVMe controller: controller memory buffer', () => {
  const cmbBar = (r: Rig) => r.nvme.fn.bars.find((b) => b.index === 2)!;
  const enableCmb = (r: Rig): void => {
    // Linux: hi_lo_writeq(CRE | CMSE | bus address of the CMB) into CMBMSC.
    const v = R.NVME_CMBMSC_CRE | R.NVME_CMBMSC_CMSE | cmbBar(r).busStart;
    nvmeWritel(r.fab, r.nvme, R.NVME_REG_CMBMSC + 4, Number(v >> 32n));
    nvmeWritel(r.fab, r.nvme, R.NVME_REG_CMBMSC, Number(v & 0xffffffffn));
  };

  it('hides CMBLOC/CMBSZ until CMBMSC.CRE, then advertises a 64 MiB CMB in BAR2 with WDS and RDS', () => {
    const r = rig();
    expect(nvmeReadl(r.fab, r.nvme, R.NVME_REG_CMBSZ)).toBe(0);
    nvmeWritel(r.fab, r.nvme, R.NVME_REG_CMBMSC, 1);
    const cmbsz = nvmeReadl(r.fab, r.nvme, R.NVME_REG_CMBSZ);
    const cmbloc = nvmeReadl(r.fab, r.nvme, R.NVME_REG_CMBLOC);
    expect(cmbsz & (R.NVME_CMBSZ_WDS | R.NVME_CMBSZ_RDS)).toBe(R.NVME_CMBSZ_WDS | R.NVME_CMBSZ_RDS);
    const unit = R.nvmeCmbSizeUnit((cmbsz >>> R.NVME_CMBSZ_SZU_SHIFT) & R.NVME_CMBSZ_SZU_MASK);
    expect(unit * BigInt(cmbsz >>> R.NVME_CMBSZ_SZ_SHIFT)).toBe(64n * MiB);
    expect([cmbloc & R.NVME_CMBLOC_BIR_MASK, cmbloc >>> R.NVME_CMBLOC_OFST_SHIFT]).toEqual([2, 0]);
  });
  it('runs an I/O SQ in the CMB and takes write data a peer put there, with neither crossing the NVMe link', () => {
    const r = rig();
    enableCmb(r);
    const bar = cmbBar(r);
    createIoQueues(r, bar.busStart + 0x100000n);
    const io = new NvmeHostQueue(r.fab, r.nvme, 1, bar.cpuStart + 0x100000n, IOCQ, 64);
    // A peer GPU writes 4 KiB into the CMB over the switch.
    const gpu = r.fab.machine.byName.get('0000:04:00.0')!;
    const data = pattern(4096, 21);
    fabricDma(
      r.fab,
      {
        requester: gpu,
        kind: 'write',
        addr: dmaAddr(bar.busStart + 0x200000n),
        len: bytes(4096),
        local: { kind: 'bytes', bytes: data },
      },
      () => {},
    );
    r.run();
    const link = r.fab.linkBelow(r.fab.machine.byName.get('0000:02:00.0')!)!;
    const [up0, down0] = [link.bytesUp, link.bytesDown];
    const c = r.cmd(io, rw(R.NVME_CMD_WRITE, 1, 64, 8, { prp1: bar.busStart + 0x200000n }));
    expect(sc(c)).toEqual([0, 0]);
    expect(same(r.nvme.storage.readBytes(64 * 512, 4096), data)).toBe(true);
    // Only the 16-byte completion crossed the link: no SQE fetch, no data.
    expect([link.bytesUp - up0, link.bytesDown - down0]).toEqual([16, 0]);
  });
  it('refuses read data into a CMB that does not advertise RDS (Invalid Use of Controller Memory Buffer)', () => {
    const r = rig({ cmb: { bar: 2, size: 64n * MiB, flags: R.NVME_CMBSZ_SQS | R.NVME_CMBSZ_WDS } });
    enableCmb(r);
    createIoQueues(r);
    const c = r.cmd(r.io, rw(R.NVME_CMD_READ, 1, 0, 8, { prp1: cmbBar(r).busStart }));
    expect(sc(c)).toEqual([0, R.NVME_SC_CMB_INVALID_USE]);
  });
  it('a pre-1.4 controller (no CAP.CMBS) shows its CMB at once and answers it at the BAR address', () => {
    const r = rig({ cmbMsc: false });
    expect(nvmeReadl(r.fab, r.nvme, R.NVME_REG_CMBSZ)).not.toBe(0);
    expect(r.nvme.inCmb(cmbBar(r).busStart, 4096)).toBe(0);
  });
});

describe('NVMe controller: data layouts (property)', () => {
  /** Host-side layout of `len` bytes over scattered pages: PRP1/PRP2(+list), or a one-segment SGL. */
  function layout(r: Rig, pages: bigint[], firstOff: number, len: number, sgl: boolean, listAt: bigint) {
    const pieces: { addr: bigint; len: number }[] = [];
    let left = len;
    for (const [i, p] of pages.entries()) {
      if (left === 0) break;
      const off = i === 0 ? firstOff : 0;
      const n = Math.min(4096 - off, left);
      pieces.push({ addr: p + BigInt(off), len: n });
      left -= n;
    }
    if (sgl) {
      r.poke(
        listAt,
        Buffer.concat(pieces.map((x) => encodeSglDesc(x.addr, x.len, R.NVME_SGL_FMT_DATA_DESC))),
      );
      return {
        pieces,
        f: {
          flags: R.NVME_CMD_SGL_METABUF,
          sgl: encodeSglDesc(listAt, pieces.length * 16, R.NVME_SGL_FMT_LAST_SEG_DESC),
        },
      };
    }
    if (pieces.length <= 2) return { pieces, f: { prp1: pieces[0]!.addr, prp2: pieces[1]?.addr ?? 0n } };
    r.poke(listAt, encodePrpList(pieces.slice(1).map((x) => x.addr)));
    return { pieces, f: { prp1: pieces[0]!.addr, prp2: listAt } };
  }

  it('any PRP or SGL layout written then read back through another layout round-trips byte-exactly', () => {
    const r = rig();
    createIoQueues(r);
    let cid = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 256 }),
        fc.integer({ min: 0, max: 1023 }).map((d) => d * 4),
        fc.uniqueArray(fc.integer({ min: 0, max: 4095 }), { minLength: 66, maxLength: 66 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 100_000 }),
        (nlb, off, pageIdx, sglW, sglR, slba) => {
          const len = nlb * 512;
          const pg = pageIdx.map((i) => BUF + BigInt(i) * 4096n);
          const data = pattern(len, slba & 0xff);
          const w = layout(r, pg.slice(0, 33), off, len, sglW, RAM + 0x3000000n);
          let at = 0;
          for (const p of w.pieces) {
            r.poke(p.addr, data.subarray(at, at + p.len));
            at += p.len;
          }
          expect(sc(r.cmd(r.io, rw(R.NVME_CMD_WRITE, cid++ & 0xffff, slba, nlb, w.f)))).toEqual([0, 0]);
          const rd = layout(r, pg.slice(33), 0, len, sglR, RAM + 0x3100000n);
          expect(sc(r.cmd(r.io, rw(R.NVME_CMD_READ, cid++ & 0xffff, slba, nlb, rd.f)))).toEqual([0, 0]);
          expect(same(Buffer.concat(rd.pieces.map((p) => r.peek(p.addr, p.len))), data)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });
});
