// The reference counter of a dev_pagemap (`struct percpu_ref`, lib/percpu-refcount.c), reduced to what
// the model observes: a count that starts at 1 (the initial reference), a "dying" state after
// percpu_ref_kill() in which tryget_live fails, and a release callback when a dying ref reaches 0.
//
// memunmap_pages() kills the ref and waits for that release (wait_for_completion(&pgmap->done)); the
// model cannot block, so the release callback is where the waiting caller continues.

export interface PercpuRef {
  count: number;
  dying: boolean;
  /** Called once when the count of a dying ref reaches 0 (`percpu_ref_func_t release`). */
  onRelease: (() => void) | null;
  released: boolean;
}

/** `percpu_ref_init()`: count 1 (the initial reference), live. */
export const percpuRefInit = (onRelease: (() => void) | null = null): PercpuRef => ({
  count: 1,
  dying: false,
  onRelease,
  released: false,
});

function release(ref: PercpuRef): void {
  if (ref.dying && ref.count === 0 && !ref.released) {
    ref.released = true;
    ref.onRelease?.();
  }
}

/** `percpu_ref_get_many()`. @throws when the ref was already released (use after free). */
export function percpuRefGetMany(ref: PercpuRef, n: number): void {
  if (ref.released) throw new Error('BUG: percpu_ref_get on a released ref');
  ref.count += n;
}

export const percpuRefGet = (ref: PercpuRef): void => percpuRefGetMany(ref, 1);

/** `percpu_ref_tryget_live()`: take a reference unless the ref is dying. */
export function percpuRefTrygetLive(ref: PercpuRef): boolean {
  if (ref.dying || ref.released) return false;
  ref.count++;
  return true;
}

/** `percpu_ref_put_many()`. @throws when the count would go below zero (the kernel's underflow WARN). */
export function percpuRefPutMany(ref: PercpuRef, n: number): void {
  if (ref.count < n) throw new Error(`BUG: percpu_ref_put_many(${n}) underflows a count of ${ref.count}`);
  ref.count -= n;
  release(ref);
}

export const percpuRefPut = (ref: PercpuRef): void => percpuRefPutMany(ref, 1);

/** `percpu_ref_kill()`: mark dying and drop the initial reference. @throws on a second kill. */
export function percpuRefKill(ref: PercpuRef): void {
  if (ref.dying) throw new Error('BUG: percpu_ref_kill called more than once');
  ref.dying = true;
  percpuRefPut(ref);
}

/** `percpu_ref_is_dying()`. */
export const percpuRefIsDying = (ref: PercpuRef): boolean => ref.dying;
