// The zod schema of a machine file (docs/machine-file.md): the shape people write, validated key by
// key, with leaf values (IDs, sizes, ACS bits, class names) turned into numbers on the way. Anything
// the shape alone cannot check (bus numbers, duplicate addresses, BAR space) is checked by layout.ts.

import { z } from 'zod';
import {
  GEN_GTS,
  type IdPair,
  LINK_WIDTHS,
  type Parsed,
  parseAcsBit,
  parseAddress,
  parseClass,
  parseIdPair,
  parseSize,
} from './values.js';

// The validated document. Written out (not inferred) because devices nest recursively.
type Opt<T> = T | undefined;
export interface LinkDoc {
  readonly gen: number;
  readonly width: number;
  readonly currentGen?: Opt<number>;
  readonly currentWidth?: Opt<number>;
}
/** ACS: 'default', 'none', or explicit capability ('default' or a mask) and firmware control mask. */
export type AcsDoc = 'default' | 'none' | { readonly cap: 'default' | number; readonly ctrl?: Opt<number> };
export interface BarDoc {
  readonly index?: Opt<number>;
  readonly size: bigint;
  readonly bits?: Opt<32 | 64>;
  readonly prefetchable?: Opt<boolean>;
  readonly address?: Opt<bigint>;
  readonly role?: Opt<'cmb' | 'vram'>;
}
export interface SriovDoc {
  readonly totalVfs: number;
  readonly vfId?: Opt<IdPair>;
  readonly vfOffset?: Opt<number>;
  readonly vfStride?: Opt<number>;
}
interface PlacementDoc {
  readonly slot?: Opt<number>;
  readonly function?: Opt<number>;
  readonly name?: Opt<string>;
  readonly driver?: Opt<string | null>;
}
interface DownstreamSideDoc {
  readonly secondaryBus?: Opt<number>;
  readonly externalFacing?: Opt<boolean>;
  readonly devices?: Opt<readonly DeviceDoc[]>;
}
interface IdentityDoc {
  readonly id: IdPair;
  readonly subsystem?: Opt<IdPair>;
  readonly revision?: Opt<number>;
}
export interface EndpointDoc extends PlacementDoc, IdentityDoc {
  readonly kind: 'endpoint';
  readonly class: number;
  readonly functions?: Opt<number>;
  readonly conventional?: Opt<boolean>;
  readonly link?: Opt<LinkDoc>;
  readonly acs?: Opt<AcsDoc>;
  readonly bars?: Opt<readonly BarDoc[]>;
  readonly cmb?: Opt<bigint>;
  readonly vram?: Opt<bigint>;
  readonly sriov?: Opt<SriovDoc>;
}
export interface RootPortDoc extends PlacementDoc, DownstreamSideDoc, IdentityDoc {
  readonly kind: 'root-port';
  readonly link?: Opt<LinkDoc>;
  readonly acs?: Opt<AcsDoc>;
  readonly bars?: Opt<readonly BarDoc[]>;
}
export interface DownstreamPortDoc extends PlacementDoc, DownstreamSideDoc {
  readonly id?: Opt<IdPair>;
  readonly link?: Opt<LinkDoc>;
  readonly acs?: Opt<AcsDoc>;
}
export interface UpstreamPortDoc {
  readonly id?: Opt<IdPair>;
  readonly link?: Opt<LinkDoc>;
  readonly acs?: Opt<AcsDoc>;
  readonly secondaryBus?: Opt<number>;
  readonly bars?: Opt<readonly BarDoc[]>;
}
export interface SwitchDoc extends PlacementDoc, IdentityDoc {
  readonly kind: 'switch';
  readonly upstream?: Opt<UpstreamPortDoc>;
  readonly downstream: readonly DownstreamPortDoc[];
}
export interface PciBridgeDoc extends PlacementDoc, DownstreamSideDoc, IdentityDoc {
  readonly kind: 'pci-bridge';
  readonly link?: Opt<LinkDoc>;
  readonly acs?: Opt<AcsDoc>;
}
export type DeviceDoc = EndpointDoc | RootPortDoc | SwitchDoc | PciBridgeDoc;

/** A zod type for a leaf parsed by one of values.ts's parsers; the error lands on the node itself. */
function leaf<T>(parse: (v: unknown) => Parsed<T>, what: string) {
  return z.unknown().transform((v, ctx): T => {
    if (v === undefined) {
      ctx.issues.push({ code: 'custom', message: `${what} is required`, input: v });
      return z.NEVER;
    }
    const r = parse(v);
    if (!r.ok) {
      ctx.issues.push({ code: 'custom', message: r.why, input: v });
      return z.NEVER;
    }
    return r.value;
  });
}

const Id = leaf(parseIdPair, 'a vendor:device ID');
const Size = leaf(parseSize, 'a size');
const Address = leaf(parseAddress, 'an address');
const ClassCode = leaf(parseClass, 'a class');
const AcsBits = z.array(leaf(parseAcsBit, 'an ACS bit')).transform((bits) => bits.reduce((a, b) => a | b, 0));

const Byte = (max: number, what: string) =>
  z
    .int({ error: `expected ${what} (an integer 0..${max})` })
    .min(0, { error: `${what} must be 0..${max}` })
    .max(max, {
      error: `${what} must be 0..${max}`,
    });

const Gen = z
  .int({ error: 'expected a PCIe generation 1..6' })
  .refine((g) => g in GEN_GTS, { error: 'a PCIe generation is 1..6' });
const Width = z
  .int({ error: `expected a link width (${LINK_WIDTHS.join(', ')})` })
  .refine((w) => (LINK_WIDTHS as readonly number[]).includes(w), {
    error: `a link width is one of ${LINK_WIDTHS.join(', ')}`,
  });

/** Link capability (max) and, when the link trained lower, what it trained to. */
export const Link = z.strictObject({
  gen: Gen,
  width: Width,
  currentGen: Gen.optional(),
  currentWidth: Width.optional(),
});

/** `default` (what this kind of port really advertises), `none`, or explicit cap/ctrl bit lists. */
export const Acs = z.union([
  z.enum(['default', 'none'], { error: 'expected default, none, or { cap: [...], ctrl: [...] }' }),
  z.strictObject({ cap: z.union([z.literal('default'), AcsBits]), ctrl: AcsBits.optional() }),
]);

/** A BAR; the index may be left out (the next free one is taken). */
export const Bar = z.strictObject({
  index: Byte(5, 'a BAR number').optional(),
  size: Size,
  bits: z.union([z.literal(32), z.literal(64)], { error: 'bits is 32 or 64' }).optional(),
  prefetchable: z.boolean().optional(),
  /** CPU address; allocated from the host bridge's window when omitted. */
  address: Address.optional(),
  role: z.enum(['cmb', 'vram'], { error: 'role is cmb (NVMe CMB) or vram (GPU memory)' }).optional(),
});

const Sriov = z.strictObject({
  totalVfs: z.int().min(1).max(0xffff),
  vfId: Id.optional(),
  vfOffset: z.int().min(1).max(0xffff).optional(),
  vfStride: z.int().min(1).max(0xffff).optional(),
});

/** Keys every device entry may have: where it sits and what people call it. */
const placement = {
  slot: Byte(31, 'a device (slot) number').optional(),
  function: Byte(7, 'a function number').optional(),
  name: z.string().optional(),
  driver: z.string().nullable().optional(),
};

/** Keys of a bridge's downstream side (its bus); `devices` is written out in each (a getter: recursion). */
const downstream = {
  secondaryBus: Byte(255, 'a bus number').optional(),
  externalFacing: z.boolean().optional(),
};

const Endpoint = z.strictObject({
  kind: z.literal('endpoint'),
  ...placement,
  id: Id,
  class: ClassCode,
  subsystem: Id.optional(),
  revision: Byte(255, 'a revision').optional(),
  functions: z.int().min(1).max(8, { error: 'a device has at most 8 functions' }).optional(),
  conventional: z.boolean().optional(),
  link: Link.optional(),
  acs: Acs.optional(),
  bars: z.array(Bar).optional(),
  cmb: Size.optional(),
  vram: Size.optional(),
  sriov: Sriov.optional(),
});

const RootPort = z.strictObject({
  get devices() {
    return z.array(Device).optional();
  },
  kind: z.literal('root-port'),
  ...placement,
  ...downstream,
  id: Id,
  subsystem: Id.optional(),
  revision: Byte(255, 'a revision').optional(),
  link: Link.optional(),
  acs: Acs.optional(),
  bars: z.array(Bar).optional(),
});

const DownstreamPort = z.strictObject({
  get devices() {
    return z.array(Device).optional();
  },
  ...placement,
  ...downstream,
  id: Id.optional(),
  link: Link.optional(),
  acs: Acs.optional(),
});

const Switch = z.strictObject({
  kind: z.literal('switch'),
  ...placement,
  id: Id,
  subsystem: Id.optional(),
  revision: Byte(255, 'a revision').optional(),
  upstream: z
    .strictObject({
      id: Id.optional(),
      link: Link.optional(),
      acs: Acs.optional(),
      secondaryBus: Byte(255, 'a bus number').optional(),
      bars: z.array(Bar).optional(),
    })
    .optional(),
  downstream: z.array(DownstreamPort).min(1, { error: 'a switch needs at least one downstream port' }),
});

const PciBridge = z.strictObject({
  get devices() {
    return z.array(Device).optional();
  },
  kind: z.literal('pci-bridge'),
  ...placement,
  ...downstream,
  id: Id,
  subsystem: Id.optional(),
  revision: Byte(255, 'a revision').optional(),
  link: Link.optional(),
  acs: Acs.optional(),
});

export const Device: z.ZodType<DeviceDoc> = z.discriminatedUnion('kind', [
  Endpoint,
  RootPort,
  Switch,
  PciBridge,
]);

const Window = z.strictObject({ base: Address, size: Size });

export const HostBridge = z.strictObject({
  name: z.string().optional(),
  domain: z.int().min(0).max(0xffff).optional(),
  bus: Byte(255, 'a root bus number').optional(),
  numaNode: z.int().min(0).nullable().optional(),
  /** ID of the host-bridge function at 00.0; omit it for a root bus without a 00.0 function. */
  hostBridgeId: Id.optional(),
  /** CPU address minus bus address of this host bridge's MMIO (the kernel's resource offset). */
  busOffset: Address.optional(),
  mmio: Window.optional(),
  mmio64: Window.optional(),
  devices: z.array(Device).optional(),
});

export const MachineFile = z.strictObject({
  name: z.string().optional(),
  description: z.string().optional(),
  cpu: z
    .strictObject({
      vendor: z.string(),
      family: z.int().min(0),
      model: z.int().min(0),
      name: z.string(),
      arch: z.string().optional(),
      sockets: z.int().min(1).optional(),
    })
    .optional(),
  numaNodes: z.int().min(1).optional(),
  kernel: z.strictObject({ cmdline: z.string().optional(), release: z.string().optional() }).optional(),
  iommu: z
    .strictObject({
      vendor: z.enum(['intel', 'amd', 'none'], { error: 'iommu vendor is intel, amd or none' }),
      enabled: z.boolean().optional(),
      platformOptIn: z.boolean().optional(),
      defaultOn: z.boolean().optional(),
    })
    .optional(),
  defaults: z.strictObject({ link: Link.optional() }).optional(),
  hostBridges: z.array(HostBridge).min(1, { error: 'a machine needs at least one host bridge' }),
});

export type MachineFileDoc = z.output<typeof MachineFile>;
export type HostBridgeDoc = z.output<typeof HostBridge>;
