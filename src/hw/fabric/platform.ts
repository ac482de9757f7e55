// Host-bridge forwarding: whether a root complex passes a peer-to-peer request it received from one
// root port (or integrated device) on to a device BAR below another root port, another host bridge
// or another socket. PCIe leaves this optional ("peer-to-peer between root ports is implementation
// specific"), so it is a property of the silicon: a per-platform table, data with a reason per row.
// A refused request is dropped with Unsupported Request and moves no data.
//
// This is the hardware fact that drivers/pci/p2pdma.c guesses at with `cpu_supports_p2pdma()` and
// `pci_p2pdma_whitelist[]`; the kernel model keeps its own copy of those (kernel/pci), this file
// decides what the fabric actually does, and a machine may override it (FabricOptions.forwarding).
//
//   request at root complex A for a BAR below root complex B
//     rule(A) and rule(B) each: 'any' | 'same-host-bridge' | 'none'
//     allowed  <=>  neither is 'none', and both are 'any' or A === B

import type { CpuInfo, HostBridge, Machine } from '../pci.js';

/** How far a root complex forwards peer requests. */
export type ForwardingScope = 'none' | 'same-host-bridge' | 'any';

export type ForwardingMatch =
  | { readonly kind: 'host-bridge-id'; readonly vendor: number; readonly devices: readonly number[] }
  | {
      readonly kind: 'cpu';
      readonly vendorId: string;
      readonly family: number;
      readonly models?: readonly number[];
    }
  | { readonly kind: 'cpu-family-at-least'; readonly vendorId: string; readonly family: number }
  | { readonly kind: 'default' };

export interface ForwardingRule {
  readonly name: string;
  readonly match: ForwardingMatch;
  readonly scope: ForwardingScope;
  readonly rationale: string;
}

const INTEL = 0x8086;

/** The table, most specific first (host-bridge IDs, then CPUs, then the default). First match wins. */
export const HOST_BRIDGE_FORWARDING: readonly ForwardingRule[] = [
  {
    name: 'QEMU q35 / i440fx',
    match: { kind: 'host-bridge-id', vendor: INTEL, devices: [0x29c0, 0x1237] },
    scope: 'any',
    rationale: "QEMU dispatches device DMA through the guest's whole address space, peer BARs included",
  },
  {
    name: 'Intel Xeon E5 v1-v4 (Sandy Bridge-EP to Broadwell-EP)',
    match: { kind: 'host-bridge-id', vendor: INTEL, devices: [0x3c00, 0x3c01, 0x2f00, 0x2f01] },
    scope: 'same-host-bridge',
    rationale:
      'the IIO routes peer requests between its own root ports but not across QPI (Linux: REQ_SAME_HOST_BRIDGE)',
  },
  {
    name: 'Intel Xeon Scalable (Skylake-SP, Ice Lake-SP)',
    match: {
      kind: 'host-bridge-id',
      vendor: INTEL,
      devices: [0x2020, 0x2030, 0x2031, 0x2032, 0x2033, 0x09a2],
    },
    scope: 'any',
    rationale: 'the mesh IIO stacks forward peer requests between stacks and over UPI (whitelisted by Linux)',
  },
  {
    name: 'Intel Xeon E5 v1-v4 CPUs',
    match: { kind: 'cpu', vendorId: 'GenuineIntel', family: 6, models: [45, 62, 63, 79] },
    scope: 'same-host-bridge',
    rationale: 'same silicon as the E5 host bridges above, for host bridges without a 00.0 function',
  },
  {
    name: 'Intel Xeon Scalable CPUs (Skylake-SP to Granite Rapids)',
    match: { kind: 'cpu', vendorId: 'GenuineIntel', family: 6, models: [85, 106, 108, 143, 173, 207] },
    scope: 'any',
    rationale: 'same silicon as the whitelisted stacks, for stacks whose first function is not a root port',
  },
  {
    name: 'AMD Zen (family 17h and later)',
    match: { kind: 'cpu-family-at-least', vendorId: 'AuthenticAMD', family: 0x17 },
    scope: 'any',
    rationale:
      'the Infinity Fabric routes peer traffic between NBIOs and sockets (Linux: cpu_supports_p2pdma)',
  },
  {
    name: 'other root complexes',
    match: { kind: 'default' },
    scope: 'none',
    rationale:
      'peer forwarding between root ports is optional in PCIe; unknown silicon is assumed not to do it',
  },
];

/** The root device Linux checks for a host bridge: its first root-bus function, if at 00.0 or a root port. */
function hostBridgeRootDevice(h: HostBridge): { vendor: number; device: number } | null {
  const f = h.rootFunctions[0];
  if (!f) return null;
  return f.addr.devfn === 0 || f.portType === 'root-port' ? f : null;
}

function matches(m: ForwardingMatch, h: HostBridge, cpu: CpuInfo | null): boolean {
  switch (m.kind) {
    case 'host-bridge-id': {
      const d = hostBridgeRootDevice(h);
      return d !== null && d.vendor === m.vendor && m.devices.includes(d.device);
    }
    case 'cpu':
      return (
        cpu !== null &&
        cpu.vendorId === m.vendorId &&
        cpu.family === m.family &&
        (m.models === undefined || m.models.includes(cpu.model))
      );
    case 'cpu-family-at-least':
      return cpu !== null && cpu.vendorId === m.vendorId && cpu.family >= m.family;
    case 'default':
      return true;
  }
}

/**
 * The forwarding rule of one host bridge: the first matching row of `rules`.
 * @returns the rule; throws only if `rules` has no default row and nothing matched (a bad override).
 */
export function hostBridgeForwardingRule(
  machine: Pick<Machine, 'cpu'>,
  h: HostBridge,
  rules: readonly ForwardingRule[] = HOST_BRIDGE_FORWARDING,
): ForwardingRule {
  const r = rules.find((x) => matches(x.match, h, machine.cpu));
  if (!r)
    throw new Error(`host-bridge forwarding: no rule matches ${h.name} (the table needs a default row)`);
  return r;
}

/** Does a peer request entering at `from` and leaving at `to` get forwarded, given each one's scope? */
export function hostBridgeForwards(
  from: ForwardingScope,
  to: ForwardingScope,
  sameHostBridge: boolean,
): boolean {
  if (from === 'none' || to === 'none') return false;
  return sameHostBridge || (from === 'any' && to === 'any');
}

/** A table that gives every host bridge one scope (a machine-wide override). */
export const forwardingEverywhere = (scope: ForwardingScope, why = 'machine override'): ForwardingRule[] => [
  { name: `all root complexes: ${scope}`, match: { kind: 'default' }, scope, rationale: why },
];
