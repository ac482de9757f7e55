// The part of a VFIO PCI device (drivers/vfio/pci/vfio_pci_core.c, vfio_pci_config.c,
// drivers/vfio/vfio_main.c) that its dma-bufs depend on: the device's memory decoding
// (__vfio_pci_memory_enabled), the memory_lock that guards it, the registration reference dma-bufs
// hold, and the three things that take the BAR away from importers:
//
//   VFIO_DEVICE_RESET        down_write(memory_lock); move(revoked=true); FLR; memory decoding back on
//                            (pci_try_reset_function restores COMMAND) -> move(false); up_write
//   COMMAND.MEMORY cleared   down_write; move(true); write; up_write     (set again: move(false))
//   close / unplug           vfio_pci_dma_buf_cleanup(): revoked for good, detached from the device
//
// Zapping the user's own mmaps of the BARs (vfio_pci_zap_bars) is not modelled.

import type { PciFunction } from '../../../hw/pci.js';
import { sleep } from '../../../sim/task.js';
import { dmaBufWorldOf } from '../../dma-buf/dma-buf-kernel.js';
import type { KTaskOp } from '../../dma-buf/sched.js';
import type { DmaBufWorld } from '../../dma-buf/world.js';
import type { KResult } from '../../errno.js';
import { ok } from '../../errno.js';
import type { Kernel } from '../../kernel.js';
import { pcimP2pdmaInit } from '../../pci/p2pdma-provider.js';
import { downWrite, initRwsem, type RwSem, upWrite } from '../rwsem.js';
import { note, type Timeline } from '../timeline.js';
import { type VfioPciDmaBuf, vfioPciDmaBufCleanup, vfioPciDmaBufMove } from './vfio-pci-dmabuf.js';

/** `struct vfio_pci_core_device`, reduced. */
export interface VfioPciCoreDevice {
  readonly k: Kernel;
  readonly world: DmaBufWorld;
  readonly pdev: PciFunction;
  readonly name: string;
  /** PCI_COMMAND_MEMORY in the function's command register. */
  memoryEnabled: boolean;
  /** `pdev->current_state < PCI_D3hot`. */
  d0: boolean;
  /** The vfio_device is registered (false after unplug). */
  registered: boolean;
  /** References from vfio_device_try_get_registration() (each live dma-buf holds one). */
  regRefs: number;
  /** `vdev->memory_lock`. */
  readonly memoryLock: RwSem;
  /** `vdev->dmabufs`. */
  readonly dmabufs: VfioPciDmaBuf[];
  /** The variant driver provides `pci_ops->get_dmabuf_phys` (vfio-pci itself does). */
  readonly getDmabufPhys: boolean;
  /** How long a function-level reset keeps the device busy (virtual ns). */
  readonly resetNs: number;
  readonly timeline: Timeline | null;
}

export interface VfioPciOptions {
  readonly getDmabufPhys?: boolean;
  readonly memoryEnabled?: boolean;
  /** FLR duration; the PCIe spec allows up to 100 ms, the model defaults to 1 ms. */
  readonly resetNs?: number;
  readonly timeline?: Timeline | null;
}

/**
 * vfio_pci_core_register_device(): bind `pdev` to vfio-pci, with a P2P provider per BAR
 * (pcim_p2pdma_init; a device whose BARs cannot be mapped simply exports nothing).
 * Precondition: a newest-profile kernel (VFIO dma-buf export arrived in 6.19).
 */
export function vfioPciCoreRegisterDevice(
  k: Kernel,
  pdev: PciFunction,
  o: VfioPciOptions = {},
): VfioPciCoreDevice {
  pcimP2pdmaInit(k, pdev);
  return {
    k,
    world: dmaBufWorldOf(k),
    pdev,
    name: `vfio-pci ${pdev.name}`,
    memoryEnabled: o.memoryEnabled ?? true,
    d0: true,
    registered: true,
    regRefs: 0,
    memoryLock: initRwsem('vdev->memory_lock'),
    dmabufs: [],
    getDmabufPhys: o.getDmabufPhys ?? true,
    resetNs: o.resetNs ?? 1_000_000,
    timeline: o.timeline ?? null,
  };
}

/** `__vfio_pci_memory_enabled()`: in D0 with memory decoding on. */
export const vfioPciMemoryEnabled = (vdev: VfioPciCoreDevice): boolean => vdev.d0 && vdev.memoryEnabled;

/** `vfio_device_try_get_registration()`: false once the device is being unregistered. */
export function vfioDeviceTryGetRegistration(vdev: VfioPciCoreDevice): boolean {
  if (!vdev.registered) return false;
  vdev.regRefs++;
  return true;
}

/** `vfio_device_put_registration()`. */
export function vfioDevicePutRegistration(vdev: VfioPciCoreDevice): void {
  if (vdev.regRefs === 0) throw new Error(`BUG: ${vdev.name}: registration reference underflow`);
  vdev.regRefs--;
}

/**
 * VFIO_DEVICE_RESET (vfio_pci_ioctl_reset): revoke every dma-buf of the device (waiting until importers
 * have let go), reset the function, and hand the BARs back when decoding is on again.
 * @returns ok (the model's reset always works). May sleep.
 */
export function* vfioPciIoctlReset(vdev: VfioPciCoreDevice): KTaskOp<KResult<void>> {
  yield* downWrite(vdev.world, vdev.memoryLock);
  vdev.d0 = true;
  note(vdev.timeline, vdev.name, 'reset: revoke');
  yield* vfioPciDmaBufMove(vdev, true);
  note(vdev.timeline, vdev.name, 'reset: revoke returned, FLR');
  // pci_try_reset_function() saves config space, resets, and restores it (COMMAND included).
  const saved = vdev.memoryEnabled;
  vdev.memoryEnabled = false;
  yield sleep(vdev.resetNs);
  vdev.memoryEnabled = saved;
  note(vdev.timeline, vdev.name, 'reset: done');
  if (vfioPciMemoryEnabled(vdev)) yield* vfioPciDmaBufMove(vdev, false);
  upWrite(vdev.memoryLock);
  return ok(undefined);
}

/**
 * A user write of PCI_COMMAND with MEMORY set or cleared (vfio_basic_config_write): turning decoding
 * off revokes the dma-bufs first; turning it on restores them. May sleep.
 */
export function* vfioPciWriteCommandMemory(vdev: VfioPciCoreDevice, enable: boolean): KTaskOp<void> {
  yield* downWrite(vdev.world, vdev.memoryLock);
  if (!enable) yield* vfioPciDmaBufMove(vdev, true);
  vdev.memoryEnabled = enable;
  if (vfioPciMemoryEnabled(vdev)) yield* vfioPciDmaBufMove(vdev, false);
  upWrite(vdev.memoryLock);
}

/** close_device / hot unplug: every dma-buf is revoked for good (vfio_pci_dma_buf_cleanup). May sleep. */
export function* vfioPciCoreCloseDevice(vdev: VfioPciCoreDevice, unplug = false): KTaskOp<void> {
  note(vdev.timeline, vdev.name, unplug ? 'unplug: revoke' : 'close: revoke');
  yield* vfioPciDmaBufCleanup(vdev);
  if (unplug) vdev.registered = false;
  note(vdev.timeline, vdev.name, 'revoke returned');
}
