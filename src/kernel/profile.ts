// Kernel profiles: the facts that differ between the kernels dmasim models.
//
// '6.1' is Linux 6.1 (Debian's 6.1.192, the kernel the recorded oracle cases came from). 'newest' is
// mainline as of 2026 (v6.19 / v7.0 era). Shared code reads a fact from the profile; it never asks
// "which version is this" (STYLE: each implementation declares its own answer).

export type KernelVersion = '6.1' | 'newest';

export const KERNEL_VERSIONS: readonly KernelVersion[] = ['6.1', 'newest'];

export const DEFAULT_KERNEL: KernelVersion = 'newest';

export const isKernelVersion = (v: string): v is KernelVersion =>
  (KERNEL_VERSIONS as readonly string[]).includes(v);
