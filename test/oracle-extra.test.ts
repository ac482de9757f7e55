// Held-out real-kernel cases (test/fixtures/oracle-extra, recorded with the linux-oracle tool: random
// topologies from fresh gen.py seeds and targeted specs for SR-IOV VFs, several pxb host bridges,
// nested root ports, disable_acs_redir forms): dmasim with --kernel 6.1 must give exactly what Linux
// 6.1.192 decided for every ordered pair, like test/oracle.test.ts; its boot-time ACS programming
// must reproduce the ACS Control registers and lines the kernel left; and cases recorded with
// p2poracle.many=1 check distance_many() with every endpoint as a client. Cases dmasim still gets wrong wait in
// test/fixtures/oracle-pending (not run here).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  oracleAcsBootTest,
  oracleCaseNames,
  oracleCaseTests,
  oracleManyTest,
} from './helpers/oracle-case.js';

const EXTRA = join(import.meta.dirname, 'fixtures', 'oracle-extra');

const cases = oracleCaseNames(EXTRA);

describe('held-out oracle cases (Linux 6.1.192)', () => {
  it('has the recorded cases', () => expect(cases.length).toBeGreaterThanOrEqual(70));

  for (const name of cases) {
    oracleCaseTests(EXTRA, name);
    oracleAcsBootTest(EXTRA, name);
    oracleManyTest(EXTRA, name);
  }
});
