// The NVM command set of the controller model: Read, Write and Flush on namespace 1, with data moved
// between the host pieces (PRP or SGL) and the namespace's sparse storage by DMA, and the flash time
// on the controller's media resource. Mirrors what drivers/nvme/host/pci.c's nvme_queue_rq submits
// (nvme_setup_rw) and the status codes a drive returns: Invalid Namespace, LBA Out of Range, Invalid
// Field (beyond MDTS), Invalid Use of the CMB, Data Transfer Error when a DMA is refused or faults.
//
//   Read:  check -> pieces -> media (read time + bytes at media rate) -> DMA writes to the host
//   Write: check -> pieces -> DMA reads from the host into storage -> media (write time)

import { bytes } from '../addr.js';
import type { DevBuffer } from '../fabric/data-path.js';
import { type Await, type DevTask, wait } from './device-task.js';
import type { NvmeController, NvmeResult } from './nvme.js';
import type { DataSeg } from './nvme-prp-sgl.js';
import type { NvmeCommand } from './nvme-queues.js';
import * as R from './nvme-regs.js';
import { NVME_OK, nvmeStatus } from './nvme-regs.js';

const bad = (sc: number): NvmeResult => ({ status: nvmeStatus(sc) });

/** Flash time: a fixed latency, then the bytes through the shared media bandwidth. */
function media(c: NvmeController, n: number, latencyNs: number): Await<void> {
  return {
    start: (resume) =>
      void c.fab.sim.flows.startFlow({
        path: [c.media],
        size: bytes(n),
        extraLatencyNs: latencyNs,
        label: `${c.fn.name} media`,
        onComplete: () => resume(),
      }),
  };
}

/** May these pieces use the CMB? Host-to-device data needs WDS, device-to-host data needs RDS. */
function cmbUseOk(c: NvmeController, segs: readonly DataSeg[], write: boolean): boolean {
  const need = write ? R.NVME_CMBSZ_WDS : R.NVME_CMBSZ_RDS;
  for (const s of segs) {
    const inside = c.inCmb(s.addr, s.len) !== null;
    if (!inside && c.inCmb(s.addr, 1) !== null) return false; // straddles the CMB's end
    if (inside && !(c.cmb!.flags & need)) return false;
  }
  return true;
}

function* readWrite(c: NvmeController, cmd: NvmeCommand, write: boolean): DevTask<NvmeResult> {
  if (cmd.nsid !== 1) return bad(R.NVME_SC_INVALID_NS);
  const slba = BigInt(cmd.cdw[0]!) | (BigInt(cmd.cdw[1]!) << 32n);
  const nlb = (cmd.cdw[2]! & 0xffff) + 1;
  if (slba + BigInt(nlb) > c.nlb) return bad(R.NVME_SC_LBA_RANGE);
  const len = nlb * c.lbaBytes;
  if (len > 4096 * 2 ** c.mdts) return bad(R.NVME_SC_INVALID_FIELD);
  const d = yield* c.dataSegments(cmd, len, false);
  if (!d.ok) return { status: d.status };
  if (!cmbUseOk(c, d.segs, write)) return bad(R.NVME_SC_CMB_INVALID_USE);
  const base = Number(slba) * c.lbaBytes;
  const local = (at: number): DevBuffer => ({ kind: 'memory', mem: c.storage, offset: base + at });
  if (write) {
    if (!(yield* c.moveData('read', d.segs, local))) return bad(R.NVME_SC_DATA_XFER_ERROR);
    yield* wait(media(c, len, c.timing.mediaWriteNs));
    return { status: NVME_OK };
  }
  yield* wait(media(c, len, c.timing.mediaReadNs));
  if (!(yield* c.moveData('write', d.segs, local))) return bad(R.NVME_SC_DATA_XFER_ERROR);
  return { status: NVME_OK };
}

/**
 * Execute one I/O command.
 * @returns the completion status (see the table in the file header).
 */
export function* nvmeIo(c: NvmeController, cmd: NvmeCommand): DevTask<NvmeResult> {
  switch (cmd.opc) {
    case R.NVME_CMD_READ:
      return yield* readWrite(c, cmd, false);
    case R.NVME_CMD_WRITE:
      return yield* readWrite(c, cmd, true);
    case R.NVME_CMD_FLUSH:
      return cmd.nsid === 1 || cmd.nsid === 0xffffffff ? { status: NVME_OK } : bad(R.NVME_SC_INVALID_NS);
    default:
      return bad(R.NVME_SC_INVALID_OPCODE);
  }
}
