// Checking one recorded real-kernel case (a snapshot NAME.tar.gz and the kernel's decisions
// NAME.expected.json, made by the linux-oracle tool's to-fixture.py) against dmasim's model of
// drivers/pci/p2pdma.c: the same ordered pairs, map types, distances and warning lines, in order.
// Shared by test/oracle.test.ts (the shipped cases) and test/oracle-extra.test.ts (held-out cases).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { endpointsOf } from '../../src/analysis/p2p-matrix.js';
import { capturingContext, pairIterator } from '../../src/analysis/p2p-pairs.js';
import type { Machine } from '../../src/hw/pci.js';
import { type IommuPlatform, iommuRequestsAcs, pciEnableAcs } from '../../src/kernel/pci/acs.js';
import { calcMapTypeAndDist, pciP2pdmaDistance, pciP2pdmaDistanceMany } from '../../src/kernel/pci/p2pdma.js';
import { openSnapshot } from '../../src/topology/sysfs/index.js';

export interface ExpectedPair {
  provider: string;
  client: string;
  mapType: string;
  distance: number;
  warnings: string[];
}

export interface Expected {
  case: string;
  kernel: string;
  cmdline: string;
  /** Held-out cases only: the IOMMU QEMU described to the firmware (DMAR, IVRS or none). */
  iommu?: 'intel' | 'amd' | 'none';
  /** Held-out cases only: the kernel's boot-time ACS lines (pci= complaints, pci_disable_acs_redir()). */
  bootAcsLog?: string[];
  pairs: ExpectedPair[];
  /** Held-out cases with p2poracle.many=1: one verbose distance_many() per provider, many clients. */
  many?: ExpectedMany[];
}

export interface ExpectedMany {
  provider: string;
  clients: string[];
  distance: number;
  warnings: string[];
}

/** The case names in a fixture folder (every NAME.expected.json), sorted. */
export function oracleCaseNames(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.expected.json'))
    .map((f) => f.replace('.expected.json', ''))
    .sort();
}

/** The kernel's recorded decisions of one case. */
export function readExpected(dir: string, name: string): Expected {
  return JSON.parse(readFileSync(join(dir, `${name}.expected.json`), 'utf8')) as Expected;
}

/**
 * Register the two tests of one case: every pair equals the kernel's answer, and the fast matrix
 * equals the faithful kernel walk on every ordered pair of functions.
 */
export function oracleCaseTests(dir: string, name: string): void {
  it(`${name}: every pair matches the kernel`, async () => {
    const expected = readExpected(dir, name);
    const machine = await openSnapshot(join(dir, `${name}.tar.gz`));
    // With p2poracle.all=1 the module asked about every function (bridges and host bridges too).
    const eps = /(^|\s)p2poracle\.all=1(\s|$)/.test(expected.cmdline)
      ? machine.functions
      : endpointsOf(machine);
    expect(eps.map((f) => f.name).sort()).toEqual([...new Set(expected.pairs.map((p) => p.provider))].sort());
    const cc = capturingContext(machine, '6.1');
    const it = pairIterator(cc);
    const got = expected.pairs.map((e) => {
      const r = it.pair(machine.byName.get(e.provider)!, machine.byName.get(e.client)!);
      return {
        provider: e.provider,
        client: e.client,
        mapType: r.mapType,
        distance: r.distance,
        warnings: r.warnings,
      };
    });
    expect(got).toEqual(
      expected.pairs.map(({ provider, client, mapType, distance, warnings }) => ({
        provider,
        client,
        mapType,
        distance,
        warnings,
      })),
    );
    expect(got.length).toBe(eps.length * eps.length);
  });

  it(`${name}: the fast matrix equals the faithful kernel walk`, async () => {
    const machine = await openSnapshot(join(dir, `${name}.tar.gz`));
    const cc = capturingContext(machine, '6.1');
    const it = pairIterator(cc);
    for (const p of machine.functions) {
      for (const c of machine.functions) {
        const slow = calcMapTypeAndDist(cc.ctx, p, c, false);
        const fast = it.pair(p, c);
        expect([p.name, c.name, fast.mapType, fast.hops]).toEqual([p.name, c.name, slow.mapType, slow.dist]);
        expect(fast.distance).toBe(pciP2pdmaDistance(cc.ctx, p, c, false));
      }
    }
  });
}

/**
 * The IOMMU the QEMU guest's firmware described: recorded in newer fixtures; otherwise guessed from the
 * snapshot (QEMU's AMD-Vi adds a PCI function 1022:0008; IOMMU groups or an intel_iommu= parameter
 * mean a DMAR table). A DMAR table with intel_iommu=off and no table both leave ACS alone.
 */
export function qemuIommuPlatform(machine: Machine, recorded?: Expected['iommu']): IommuPlatform {
  if (recorded) return { vendor: recorded };
  if (machine.functions.some((f) => f.vendor === 0x1022 && f.device === 0x0008)) return { vendor: 'amd' };
  if (machine.iommu || /(^|\s)intel_iommu=/.test(machine.cmdline ?? '')) return { vendor: 'intel' };
  return { vendor: 'none' };
}

/**
 * Register the boot-ACS test of one case: starting from QEMU's reset value (ACS Control 0),
 * dmasim's pci_enable_acs() with the case's command line and IOMMU must leave every ACS Control
 * register exactly as the real kernel did (the snapshot's config space), and print the kernel's
 * boot-time ACS lines where the fixture recorded them.
 */
export function oracleAcsBootTest(dir: string, name: string): void {
  it(`${name}: boot ACS programming gives the captured ACS Control registers`, async () => {
    const expected = readExpected(dir, name);
    const machine = await openSnapshot(join(dir, `${name}.tar.gz`));
    const captured = new Map<string, number>();
    for (const f of machine.functions) {
      if (f.acs.state !== 'present') continue;
      captured.set(f.name, f.acs.ctrl);
      f.acs.ctrl = 0;
    }
    const log = pciEnableAcs(machine, {
      acsRequested: iommuRequestsAcs(qemuIommuPlatform(machine, expected.iommu), machine.cmdline),
      cmdline: machine.cmdline,
      version: '6.1',
    });
    const got = new Map<string, number>();
    for (const f of machine.functions) if (f.acs.state === 'present') got.set(f.name, f.acs.ctrl);
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(captured));
    if (expected.bootAcsLog) expect(log.map((l) => l.text)).toEqual(expected.bootAcsLog);
  });
}

/**
 * Register the several-clients test of a case recorded with p2poracle.many=1: for each provider,
 * pci_p2pdma_distance_many(provider, clients, n, verbose=true) gives the kernel's summed distance (or
 * -1) and the same warning lines, in order.
 */
export function oracleManyTest(dir: string, name: string): void {
  const expected = readExpected(dir, name);
  if (!expected.many) return;
  const many = expected.many;
  it(`${name}: distance_many with every endpoint as a client matches the kernel`, async () => {
    const machine = await openSnapshot(join(dir, `${name}.tar.gz`));
    const cc = capturingContext(machine, '6.1');
    const got = many.map((e) => {
      const clients = e.clients.map((c) => machine.byName.get(c)!);
      const r = cc.capture(() =>
        pciP2pdmaDistanceMany(cc.ctx, machine.byName.get(e.provider)!, clients, true),
      );
      return { provider: e.provider, distance: r.value, warnings: r.lines };
    });
    expect(got).toEqual(many.map(({ provider, distance, warnings }) => ({ provider, distance, warnings })));
  });
}
