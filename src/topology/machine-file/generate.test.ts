import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEndpoint, type Machine } from '../../hw/pci.js';
import { generateMachine, seededUniform } from './generate.js';

const endpoints = (m: Machine): number => m.functions.filter(isEndpoint).length;
const ports = (m: Machine) =>
  m.functions.filter((f) => f.portType === 'root-port' || f.portType === 'downstream-port');
const redirected = (m: Machine): number =>
  ports(m).filter((f) => f.acs.state === 'present' && (f.acs.ctrl & 0x2c) !== 0).length;

describe('generateMachine', () => {
  it('builds exactly the requested number of endpoints', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(),
        (n, hbs, seed) => {
          const m = generateMachine({ endpoints: n, hostBridges: hbs, seed });
          expect(endpoints(m)).toBe(n);
          expect(m.hostBridges).toHaveLength(hbs);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('is deterministic in its seed and differs between seeds', () => {
    const names = (m: Machine) => m.functions.map((f) => f.name).join(' ');
    expect(names(generateMachine({ endpoints: 300, seed: 7 }))).toBe(
      names(generateMachine({ endpoints: 300, seed: 7 })),
    );
    expect(names(generateMachine({ endpoints: 300, seed: 7 }))).not.toBe(
      names(generateMachine({ endpoints: 300, seed: 8 })),
    );
  });

  it('builds a 4,096-endpoint machine with switch trees up to three levels and some ACS redirect', () => {
    const m = generateMachine({ endpoints: 4096, seed: 42 });
    expect(endpoints(m)).toBe(4096);
    const depth = (f: (typeof m.functions)[number]): number => (f.bridge ? 1 + depth(f.bridge) : 0);
    const switches = m.functions.filter((f) => f.portType === 'upstream-port');
    expect(switches.length).toBeGreaterThan(100);
    expect(Math.max(...switches.map(depth))).toBeGreaterThanOrEqual(3);
    const share = redirected(m) / ports(m).length;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.35);
    expect(new Set(m.hostBridges.map((h) => h.domain)).size).toBe(m.hostBridges.length);
  });

  it('honours acsFraction and a caller-supplied random source', () => {
    expect(redirected(generateMachine({ endpoints: 200, seed: 3, acsFraction: 0 }))).toBe(0);
    const all = generateMachine({ endpoints: 200, seed: 3, acsFraction: 1 });
    expect(redirected(all)).toBe(ports(all).length);
    const r = seededUniform(5);
    expect(endpoints(generateMachine({ endpoints: 50, next: r }))).toBe(50);
  });

  it('refuses what cannot fit', () => {
    expect(() => generateMachine({ endpoints: 5000, hostBridges: 1 })).toThrow(RangeError);
    expect(() => generateMachine({ endpoints: 0 })).toThrow(RangeError);
  });
});
