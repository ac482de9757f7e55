// The VRAM range manager of a GPU driver (drivers/gpu/drm/amd/amdgpu/amdgpu_vram_mgr.c over drm_buddy,
// reduced to a first-fit list of page-aligned ranges): what a buffer object's VRAM placement is, and
// what eviction frees. Mirrors amdgpu_vram_mgr_new()/amdgpu_vram_mgr_del() at the level the model needs.

import { PAGE_SIZE_N } from '../../../hw/addr.js';

export interface VramRange {
  readonly offset: bigint;
  readonly size: bigint;
  readonly owner: string;
}

/** The manager: VRAM size and the ranges in use, sorted by offset. */
export interface VramMgr {
  readonly size: bigint;
  readonly used: VramRange[];
}

export const vramMgrInit = (size: bigint): VramMgr => ({ size, used: [] });

const pageAlign = (v: bigint): bigint => (v + PAGE_SIZE_N - 1n) & ~(PAGE_SIZE_N - 1n);

/** `amdgpu_vram_mgr_new()`: the lowest free range of `size` bytes. @returns its offset, or null (-ENOSPC). */
export function vramAlloc(mgr: VramMgr, size: bigint, owner: string): bigint | null {
  const want = pageAlign(size);
  let at = 0n;
  let i = 0;
  for (; i < mgr.used.length; i++) {
    const u = mgr.used[i]!;
    if (u.offset - at >= want) break;
    at = u.offset + u.size;
  }
  if (at + want > mgr.size) return null;
  mgr.used.splice(i, 0, { offset: at, size: want, owner });
  return at;
}

/** `amdgpu_vram_mgr_del()`. Precondition: `offset` was allocated (a double free is a driver bug: throws). */
export function vramFree(mgr: VramMgr, offset: bigint): void {
  const i = mgr.used.findIndex((u) => u.offset === offset);
  if (i < 0) throw new Error(`BUG: VRAM range at 0x${offset.toString(16)} freed twice`);
  mgr.used.splice(i, 1);
}

/** Free bytes (not necessarily contiguous). */
export const vramFreeBytes = (mgr: VramMgr): bigint => mgr.size - mgr.used.reduce((a, u) => a + u.size, 0n);
