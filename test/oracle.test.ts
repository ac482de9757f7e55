// The recorded real-kernel cases: for every case in shared/fixtures/oracle, dmasim with --kernel 6.1
// must give exactly what Linux 6.1 decided — the same ordered pairs, map types, distances and warning
// lines, in order. The checks themselves are in helpers/oracle-case.ts (shared with oracle-extra).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { oracleCaseNames, oracleCaseTests } from './helpers/oracle-case.js';

const ORACLE = join(import.meta.dirname, '..', '..', 'shared', 'fixtures', 'oracle');

const cases = oracleCaseNames(ORACLE);

describe('oracle cases (Linux 6.1.192)', () => {
  it('has the recorded cases', () => expect(cases.length).toBeGreaterThanOrEqual(21));

  for (const name of cases) oracleCaseTests(ORACLE, name);
});
