import { describe, expect, it } from 'vitest';
import { loadBuiltinMachine } from '../../topology/machine-file/index.js';
import {
  forwardingEverywhere,
  HOST_BRIDGE_FORWARDING,
  hostBridgeForwardingRule,
  hostBridgeForwards,
} from './platform.js';
import { switchBox, UNKNOWN_CPU } from './test-machines.js';

describe('host-bridge forwarding table', () => {
  it('gives each built-in machine the rule its silicon deserves', () => {
    const rule = (name: string) => {
      const m = loadBuiltinMachine(name);
      return m.hostBridges.map((h) => hostBridgeForwardingRule(m, h).name);
    };
    expect(new Set(rule('epyc-gpu'))).toEqual(new Set(['AMD Zen (family 17h and later)']));
    expect(rule('qemu-switch-iommu')).toEqual(['QEMU q35 / i440fx']);
    // Socket 0's CSTACK has the DMI function 8086:2020; socket 1's has none, so the CPU row decides.
    const xeon = rule('xeon-2s-switches');
    expect(xeon[0]).toBe('Intel Xeon Scalable (Skylake-SP, Ice Lake-SP)');
    expect(xeon).toContain('Intel Xeon Scalable CPUs (Skylake-SP to Granite Rapids)');
  });
  it('falls back to the default row (no forwarding) for unknown silicon', () => {
    const m = switchBox({ cpu: UNKNOWN_CPU });
    expect(hostBridgeForwardingRule(m, m.hostBridges[0]!).scope).toBe('none');
  });
  it('gives every row a reason, and ends with a default row', () => {
    for (const r of HOST_BRIDGE_FORWARDING) expect(r.rationale.length).toBeGreaterThan(20);
    expect(HOST_BRIDGE_FORWARDING.at(-1)!.match.kind).toBe('default');
  });
  it('combines the scopes of both root complexes', () => {
    expect(hostBridgeForwards('any', 'any', false)).toBe(true);
    expect(hostBridgeForwards('same-host-bridge', 'any', false)).toBe(false);
    expect(hostBridgeForwards('same-host-bridge', 'same-host-bridge', true)).toBe(true);
    expect(hostBridgeForwards('none', 'none', true)).toBe(false);
  });
  it('lets a machine override the table, and rejects a table without a default', () => {
    const m = switchBox({ cpu: UNKNOWN_CPU });
    expect(hostBridgeForwardingRule(m, m.hostBridges[0]!, forwardingEverywhere('any')).scope).toBe('any');
    expect(() => hostBridgeForwardingRule(m, m.hostBridges[0]!, [])).toThrow(/default row/);
  });
});
