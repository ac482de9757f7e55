// `nvme_map_cmb()` (drivers/nvme/host/pci.c): find the Controller Memory Buffer from CMBSZ/CMBLOC and
// offer it as P2PDMA memory. The CMB is usable only when it is 2 MiB aligned in size and BAR start
// (memremap_compat_align(), the subsection size on x86); it is published for other drivers and for
// userspace only when the controller reads and writes data there (CMBSZ.RDS and WDS).
//
//   CAP.CMBS (NVMe 1.4): CMBMSC.CRE first, so CMBLOC/CMBSZ read as the controller's values
//   size = SZU unit * SZ (cut to what the BAR holds);  offset = SZU unit * CMBLOC.OFST;  BAR = CMBLOC.BIR
//   CAP.CMBS: CMBMSC = CRE | CMSE | (bus address of the CMB)
//   pci_p2pdma_add_resource(pdev, bar, size, offset) -- failure: "failed to register the CMB"
//   RDS and WDS -> pci_p2pmem_publish(pdev, true)

import { pciP2pmemPublish } from '../../pci/p2pdma-alloc.js';
import { pciMemBar, pciP2pdmaAddResource } from '../../pci/p2pdma-provider.js';
import {
  capCmbs,
  cmblocBir,
  cmblocOfst,
  cmbSizeUnit,
  cmbszSz,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_CMBSZ_RDS,
  NVME_CMBSZ_WDS,
  NVME_REG_CMBLOC,
  NVME_REG_CMBMSC,
  NVME_REG_CMBSZ,
} from './nvme-defs.js';
import type { NvmeDev } from './pci.js';

/** `memremap_compat_align()` on x86: SUBSECTION_SIZE, 2 MiB. */
export const MEMREMAP_COMPAT_ALIGN = 2n * 1024n * 1024n;

/**
 * `nvme_map_cmb()`. Sets `d.cmbSize` when the CMB was registered; logs `failed to register the CMB`
 * when pci_p2pdma_add_resource() refused it. Silent (no CMB) for a missing or misaligned CMB.
 */
export function nvmeMapCmb(d: NvmeDev): void {
  if (d.cmbSize > 0n) return;
  const cmbs = capCmbs(d.cap);
  if (cmbs) d.port.write64(NVME_REG_CMBMSC, NVME_CMBMSC_CRE);
  const cmbsz = d.port.read32(NVME_REG_CMBSZ);
  if (cmbsz === 0) return;
  const cmbloc = d.port.read32(NVME_REG_CMBLOC);
  const unit = cmbSizeUnit(cmbsz);
  let size = unit * BigInt(cmbszSz(cmbsz));
  const offset = unit * BigInt(cmblocOfst(cmbloc));
  const bar = pciMemBar(d.fn, cmblocBir(cmbloc));
  if (bar === null || offset > bar.size) return;
  if (size > bar.size - offset) size = bar.size - offset;
  if (size % MEMREMAP_COMPAT_ALIGN !== 0n || bar.cpuStart % MEMREMAP_COMPAT_ALIGN !== 0n) return;
  if (cmbs) d.port.write64(NVME_REG_CMBMSC, NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | (bar.busStart + offset));
  const r = pciP2pdmaAddResource(d.k, d.fn, bar.index, size, offset);
  if (!r.ok) {
    // dev_warn(dev->ctrl.device, ...): the nvme class device, "nvme nvme0: ...".
    d.k.log.printk('warn', `nvme ${d.name}: failed to register the CMB`);
    d.port.write64(NVME_REG_CMBMSC, 0n);
    return;
  }
  d.cmbSize = size;
  if ((cmbsz & (NVME_CMBSZ_WDS | NVME_CMBSZ_RDS)) === (NVME_CMBSZ_WDS | NVME_CMBSZ_RDS))
    pciP2pmemPublish(d.k, d.fn, true);
}
