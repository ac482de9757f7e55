// The recorded real-kernel cases: for every case in shared/fixtures/oracle, dmasim with --kernel 6.1
// must give exactly what Linux 6.1 decided — the same ordered pairs, map types, distances and warning
// lines, in order.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { endpointsOf } from '../src/analysis/p2p-matrix.js';
import { capturingContext, pairIterator } from '../src/analysis/p2p-pairs.js';
import { calcMapTypeAndDist, pciP2pdmaDistance } from '../src/kernel/pci/p2pdma.js';
import { openSnapshot } from '../src/topology/sysfs/index.js';

const ORACLE = join(import.meta.dirname, '..', '..', 'shared', 'fixtures', 'oracle');

interface ExpectedPair {
  provider: string;
  client: string;
  mapType: string;
  distance: number;
  warnings: string[];
}
interface Expected {
  case: string;
  kernel: string;
  cmdline: string;
  pairs: ExpectedPair[];
}

const cases = readdirSync(ORACLE)
  .filter((f) => f.endsWith('.expected.json'))
  .map((f) => f.replace('.expected.json', ''))
  .sort();

describe('oracle cases (Linux 6.1.192)', () => {
  it('has the recorded cases', () => expect(cases.length).toBeGreaterThanOrEqual(21));

  for (const name of cases) {
    it(`${name}: every pair matches the kernel`, async () => {
      const expected = JSON.parse(readFileSync(join(ORACLE, `${name}.expected.json`), 'utf8')) as Expected;
      const machine = await openSnapshot(join(ORACLE, `${name}.tar.gz`));
      const eps = endpointsOf(machine);
      expect(eps.map((f) => f.name).sort()).toEqual(
        [...new Set(expected.pairs.map((p) => p.provider))].sort(),
      );
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
      const machine = await openSnapshot(join(ORACLE, `${name}.tar.gz`));
      const cc = capturingContext(machine, '6.1');
      const it = pairIterator(cc);
      for (const p of machine.functions) {
        for (const c of machine.functions) {
          const slow = calcMapTypeAndDist(cc.ctx, p, c, false);
          const fast = it.pair(p, c);
          expect([p.name, c.name, fast.mapType, fast.hops]).toEqual([
            p.name,
            c.name,
            slow.mapType,
            slow.dist,
          ]);
          expect(fast.distance).toBe(pciP2pdmaDistance(cc.ctx, p, c, false));
        }
      }
    });
  }
});
