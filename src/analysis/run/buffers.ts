// The memory a scenario's transfers use, made the way a program (or an in-kernel user) would get it:
//
//   anon           mmap(MAP_PRIVATE | MAP_ANONYMOUS): process RAM, faulted in by the first DMA pin
//   p2pmem         open(/sys/bus/pci/devices/<provider>/p2pmem/allocate) + mmap(MAP_SHARED): the
//                  provider's CMB pages in the process (userspace P2PDMA, 6.2+)
//   kernel-p2pmem  pci_alloc_p2pmem(provider): kernel memory of the CMB, as nvmet uses it
//
// Each buffer can be read and checksummed (for verification) and knows the errno that kept it from
// existing, if any (e.g. ENOENT: 6.1 has no allocate file; ENOMEM: the pool is too small).

import { PAGE_SIZE, type PhysAddr, physAddr } from '../../hw/addr.js';
import { Checksum } from '../../hw/memory/checksum.js';
import type { Errno } from '../../kernel/errno.js';
import { type KVirtAddr, virtToPhys } from '../../kernel/mm/direct-map.js';
import {
  copyFromUser,
  doMmap,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type UserAddr,
} from '../../kernel/mm/vma.js';
import { pciAllocP2pmem } from '../../kernel/pci/p2pdma-alloc.js';
import { p2pmemAllocateOpen } from '../../kernel/pci/p2pmem-mmap.js';
import type { BufferDoc } from './scenario-file.js';
import { findNvme, type World } from './world.js';

export type RunBuffer =
  | {
      readonly name: string;
      readonly kind: 'anon' | 'p2pmem';
      readonly size: number;
      readonly user: UserAddr;
    }
  | {
      readonly name: string;
      readonly kind: 'kernel-p2pmem';
      readonly size: number;
      readonly kaddr: KVirtAddr;
      readonly phys: PhysAddr;
    }
  | {
      readonly name: string;
      readonly kind: 'failed';
      readonly size: number;
      readonly errno: Errno;
      readonly detail: string;
    };

const roundPage = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/**
 * Make a buffer of `size` bytes as the scenario describes it.
 * @returns the buffer, or a 'failed' one carrying the errno of the call that refused it.
 */
export function makeBuffer(w: World, name: string, doc: BufferDoc, size: number): RunBuffer {
  const len = BigInt(roundPage(size));
  const failed = (errno: Errno, detail: string): RunBuffer => ({ name, kind: 'failed', size, errno, detail });
  if (doc.kind === 'anon') {
    const r = doMmap(w.proc, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, null);
    return r.ok ? { name, kind: 'anon', size, user: r.value } : failed(r.errno, r.detail);
  }
  const prov = findNvme(w, doc.provider);
  const fn =
    prov?.fn ?? w.machine.functions.find((f) => f.name === doc.provider || f.osNames.includes(doc.provider));
  if (!fn) return failed('ENODEV', `no device "${doc.provider}" in ${w.machine.name}`);
  if (doc.kind === 'kernel-p2pmem') {
    const k = pciAllocP2pmem(w.kernel, fn, len);
    if (k === null) return failed('ENOMEM', `pci_alloc_p2pmem(${fn.name}, ${len}) returned NULL`);
    return { name, kind: 'kernel-p2pmem', size, kaddr: k, phys: virtToPhys(k) };
  }
  const f = p2pmemAllocateOpen(w.kernel, fn);
  if (!f.ok) return failed(f.errno, f.detail);
  const r = doMmap(w.proc, len, PROT_READ | PROT_WRITE, MAP_SHARED, f.value);
  return r.ok ? { name, kind: 'p2pmem', size, user: r.value } : failed(r.errno, r.detail);
}

/** Bytes [off, off + len) of a buffer, as the CPU sees them. */
export function readBuffer(w: World, b: RunBuffer, off: number, len: number): Uint8Array {
  if (b.kind === 'failed') return new Uint8Array(len);
  if (b.kind === 'kernel-p2pmem') return w.kernel.dma.memory.read(physAddr(b.phys + BigInt(off)), len);
  const r = copyFromUser(w.proc, (b.user + BigInt(off)) as UserAddr, len);
  if (!r.ok) throw new Error(`BUG: a buffer of the run is unreadable: ${r.detail}`);
  return r.value;
}

/** Checksum of [off, off + len) of a buffer (read in 1 MiB pieces). */
export function checksumBuffer(w: World, b: RunBuffer, off: number, len: number): bigint {
  const h = new Checksum();
  for (let at = 0; at < len; at += 1 << 20) h.update(readBuffer(w, b, off + at, Math.min(1 << 20, len - at)));
  return h.digest();
}

/** The kernel address of byte `off` of a kernel buffer's memory, per page (for bio_add_page). */
export const kernelBufferPfn = (b: RunBuffer & { kind: 'kernel-p2pmem' }, off: number): number =>
  Number((b.phys + BigInt(off)) >> 12n);
