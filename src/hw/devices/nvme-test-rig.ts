// A test rig for the NVMe controller model: the switch-box machine, a controller on 0000:03:00.0,
// host rings and buffers at fixed places in node-0 RAM, and one-call command submission. Test
// support only (the caller hands in the simulation objects, so hw never imports sim). Mirrors no
// kernel file.

import { GiB, MiB, physAddr } from '../addr.js';
import { buildFabric, type Fabric } from '../fabric/fabric.js';
import type { FabricSim } from '../fabric/flow-seam.js';
import { type SwitchBoxOptions, switchBox } from '../fabric/test-machines.js';
import { NvmeController, type NvmeOptions } from './nvme.js';
import { encodeSqe, type NvmeCompletion, NvmeHostQueue, nvmeEnable, type SqeFields } from './nvme-host.js';
import * as R from './nvme-regs.js';

export const RAM = 4n * GiB;
export const ASQ = RAM;
export const ACQ = RAM + 0x1000n;
export const IOSQ = RAM + 0x10000n;
export const IOCQ = RAM + 0x20000n;
export const BUF = RAM + 16n * MiB;

export interface Rig {
  fab: Fabric;
  nvme: NvmeController;
  admin: NvmeHostQueue;
  io: NvmeHostQueue;
  irqs: number[];
  /** Run the simulation until nothing is pending. */
  run(): void;
  /** Submit on a queue, run, return that queue's completions. */
  cmd(q: NvmeHostQueue, f: SqeFields): NvmeCompletion[];
  poke(addr: bigint, data: Uint8Array): void;
  peek(addr: bigint, len: number): Uint8Array;
}

/** Build the rig on fresh simulation objects (`sim`), enable the controller, wait for CSTS.RDY. */
export function makeRig(
  sim: { readonly sim: FabricSim; run(): void },
  o: NvmeOptions = {},
  m: SwitchBoxOptions = {},
  adminEntries = 32,
  adminCqEntries = adminEntries,
): Rig {
  const fab = buildFabric(switchBox(m), sim.sim);
  if (m.iommu) fab.attachIdentityDomains();
  const nvme = new NvmeController(fab, fab.machine.byName.get('0000:03:00.0')!, o);
  const irqs: number[] = [];
  nvme.onInterrupt = (v) => irqs.push(v);
  nvmeEnable(fab, nvme, ASQ, ACQ, adminEntries, adminCqEntries);
  sim.run();
  return {
    fab,
    nvme,
    admin: new NvmeHostQueue(fab, nvme, 0, ASQ, ACQ, adminEntries, adminCqEntries),
    io: new NvmeHostQueue(fab, nvme, 1, IOSQ, IOCQ, 64),
    irqs,
    run: () => sim.run(),
    cmd: (q, f) => {
      q.submit(encodeSqe(f));
      sim.run();
      return q.reap();
    },
    poke: (addr, data) => void fab.addressMap.cpuWrite(physAddr(addr), data),
    peek: (addr, len) => {
      const b = new Uint8Array(len);
      fab.addressMap.cpuRead(physAddr(addr), b);
      return b;
    },
  };
}

/** Create I/O CQ 1 and SQ 1 (64 entries each) through the admin queue; returns both status codes. */
export function createIoQueues(r: Rig, sqBase = IOSQ): [number | undefined, number | undefined] {
  const cq = r.cmd(r.admin, {
    opc: R.NVME_ADMIN_CREATE_CQ,
    cid: 1,
    prp1: IOCQ,
    cdw: [(63 << 16) | 1, (1 << 16) | 3],
  });
  const sq = r.cmd(r.admin, {
    opc: R.NVME_ADMIN_CREATE_SQ,
    cid: 2,
    prp1: sqBase,
    cdw: [(63 << 16) | 1, (1 << 16) | 1],
  });
  return [cq[0]?.status.sc, sq[0]?.status.sc];
}

export const pattern = (n: number, seed: number): Uint8Array =>
  new Uint8Array(n).map((_, i) => (i * 13 + seed) & 0xff);
export const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
/** Status type and code of the first completion. */
export const sc = (c: NvmeCompletion[]): [number, number] => [c[0]!.status.sct, c[0]!.status.sc];
/** A Read or Write of `nlb` blocks at `slba` on namespace 1. */
export const rw = (
  opc: number,
  cid: number,
  slba: number,
  nlb: number,
  f: Partial<SqeFields>,
): SqeFields => ({
  opc,
  cid,
  nsid: 1,
  cdw: [slba, 0, nlb - 1],
  ...f,
});
