// `dmasim run dmabuf-evict --json` and `dmasim run vfio-revoke --json`: one JSON document each with
// `verified` (and, for vfio-revoke, `accessesAfterRevoke` = 0) and the timeline; exit code 0.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../test/helpers/run-cli.js';
import { EXIT_OK } from './exit.js';

const run = runCli;

afterEach(() => vi.restoreAllMocks());

describe('dmasim run (dma-buf scenarios)', () => {
  it('dmabuf-evict --json: verified, the eviction and re-maps on the timeline', async () => {
    const r = await run('run', 'dmabuf-evict', '--json');
    expect(r.code).toBe(EXIT_OK);
    const doc = JSON.parse(r.out);
    expect(doc).toMatchObject({
      kind: 'dmabuf-evict',
      verified: true,
      accessesToOldLocation: 0,
      evictions: 1,
    });
    const what = (doc.timeline as { what: string }[]).map((e) => e.what);
    expect(what).toEqual(
      expect.arrayContaining([
        'export',
        'attach',
        'map',
        'evict',
        'move done',
        're-mapped',
        'DMA chunks',
        'stream finished',
      ]),
    );
    expect(r.err).toBe('');
  });

  it('vfio-revoke --json: verified, accessesAfterRevoke 0, revoke before FLR on the timeline', async () => {
    const r = await run('run', 'vfio-revoke', '--json');
    expect(r.code).toBe(EXIT_OK);
    const doc = JSON.parse(r.out);
    expect(doc).toMatchObject({
      kind: 'vfio-revoke',
      verified: true,
      accessesAfterRevoke: 0,
      barIntact: true,
    });
    expect(Number.isInteger(doc.revokeReturnedNs)).toBe(true);
    const what = (doc.timeline as { what: string }[]).map((e) => e.what);
    expect(what.indexOf('reset: revoke')).toBeLessThan(what.indexOf('reset: revoke returned, FLR'));
    expect(what).toContain('revoke: IOMMU mapping removed');
  });

  it('lists both with the other built-in scenarios, and runs them as text', async () => {
    const list = await run('run');
    expect(list.out).toMatch(/^dmabuf-evict +GPU buffer exported to an RDMA NIC/m);
    expect(list.out).toMatch(/^vfio-revoke +VFIO BAR exported to iommufd/m);
    const t = await run('run', 'vfio-revoke', '--no-color');
    expect(t.out.split('\n')[0]).toBe(
      'dmasim run vfio-revoke  seed 1, kernel newest, iommu strict, machine gpu-nic-switch',
    );
    expect(t.out).toContain('Importer accesses to the BAR:');
  });

  it('a setting the scenario cannot run with is bad input (exit 2)', async () => {
    const r = await run('run', 'vfio-revoke', '--iommu', 'off');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/needs an IOMMU/);
  });
});
