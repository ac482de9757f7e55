// A GPU buffer exported to an RDMA NIC on the switch box (src/hw/fabric/test-machines.ts): GPU 04:00.0
// and NIC 05:00.0 behind one switch, a kernel on the fabric, a 4 MiB VRAM buffer filled with a seeded
// pattern, and a host destination buffer mapped for the NIC. For the RDMA tests and the dmabuf-evict
// scenario's unit tests. Mirrors no kernel file.

import { bytes, type DmaAddr, MiB, PAGE_SHIFT, physAddr } from '../../../hw/addr.js';
import { Gpu } from '../../../hw/devices/gpu.js';
import { Nic } from '../../../hw/devices/nic.js';
import { switchBox } from '../../../hw/fabric/test-machines.js';
import type { Machine } from '../../../hw/pci.js';
import type { DmaDevice } from '../../dma/device.js';
import { dmaDeviceOf } from '../../dma/dma-context.js';
import { DMA_BIT_MASK } from '../../dma/dma-types.js';
import { dmaMapPhys, dmaSetMaskAndCoherent } from '../../dma/mapping.js';
import type { DmaBuf } from '../../dma-buf/dma-buf.js';
import { runNonBlocking } from '../../dma-buf/sched.js';
import { allocPages } from '../../mm/page-alloc.js';
import { amdgpuBoCreate, type GpuBo, type GpuDevice, gpuDeviceInit, gpuResourcePhys } from '../gpu/gpu-bo.js';
import { amdgpuGemPrimeExport } from '../gpu/gpu-dmabuf.js';
import { type KernelOnFabric, kernelOnFabric } from '../kernel-on-fabric.js';
import type { IbDevice } from './umem-dmabuf.js';

export const GPU_FN = '0000:04:00.0';
export const NIC_FN = '0000:05:00.0';

/** A deterministic byte pattern (the scenarios draw theirs from the seeded PRNG). */
export const pattern = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

export interface GpuNicRig extends KernelOnFabric {
  readonly gdev: GpuDevice;
  readonly bo: GpuBo;
  readonly dmabuf: DmaBuf;
  readonly data: Uint8Array;
  readonly nic: Nic;
  readonly nicDma: DmaDevice;
  readonly ibdev: IbDevice;
  /** Host destination: CPU physical address and the NIC's DMA address of it. */
  readonly dst: { readonly phys: bigint; readonly dma: DmaAddr };
  read(phys: bigint, len: number): Uint8Array;
}

/** Build the rig: `size` bytes of buffer (default 4 MiB). */
export function gpuNicRig(o: { iommu?: 'off' | 'strict'; size?: bigint; machine?: Machine } = {}): GpuNicRig {
  const r = kernelOnFabric(o.machine ?? switchBox(), { iommu: o.iommu ?? 'off' });
  const size = o.size ?? 4n * MiB;
  const gdev = gpuDeviceInit(r.k, new Gpu(r.fab, r.fn(GPU_FN)), r.tl);
  const bo = runNonBlocking(amdgpuBoCreate(gdev, 'bo0', size, 'vram'));
  if (!bo.ok) throw new Error(bo.detail);
  const data = pattern(Number(size), 9);
  r.k.dma.memory.write(physAddr(gpuResourcePhys(gdev, bo.value.res)), data);
  const d = amdgpuGemPrimeExport(bo.value);
  if (!d.ok) throw new Error(d.detail);
  const nicDma = dmaDeviceOf(r.k.dma, r.fn(NIC_FN));
  dmaSetMaskAndCoherent(nicDma, DMA_BIT_MASK(64));
  const pfn = allocPages(r.k.mm, Number(size >> BigInt(PAGE_SHIFT)));
  if (pfn === null) throw new Error('no pages for the destination');
  const phys = BigInt(pfn) << BigInt(PAGE_SHIFT);
  const dma = dmaMapPhys(nicDma, physAddr(phys), bytes(size), 'from-device');
  return {
    ...r,
    gdev,
    bo: bo.value,
    dmabuf: d.value,
    data,
    nic: new Nic(r.fab, r.fn(NIC_FN)),
    nicDma,
    ibdev: { name: 'mlx5_0', dmaDevice: nicDma, log: [] },
    dst: { phys, dma },
    read: (p, len) => r.k.dma.memory.read(physAddr(p), len),
  };
}
