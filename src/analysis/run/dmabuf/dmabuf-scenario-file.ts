// Scenario files for the dma-buf runs (`kind: dmabuf-evict` and `kind: vfio-revoke`): YAML validated by
// zod with file:line:col errors through the machine-file loader's helpers, like scenario-file.ts.
// Mirrors no kernel file.
//
//   dmabuf-evict:  exporter (GPU) buffer -> importer (RDMA NIC) streams it; memory pressure at `at`
//                  evicts it mid-stream (optionally moved back later)
//   vfio-revoke:   a vfio-pci device's BAR range -> iommufd (a device reaching it by IOVA writes into
//                  it) and an RDMA NIC (streams out of it); the device is reset at `at`
//
// Times are virtual: a number of ns, or a string with a unit ("300us", "1.5ms").

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { parseSize } from '../../../topology/machine-file/values.js';
import { SCENARIO_DIR } from '../scenario-file.js';
import { parseScenarioYaml, readScenarioText } from '../scenario-yaml.js';

const Size = z.unknown().transform((v, ctx) => {
  const r = parseSize(v);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.why });
    return z.NEVER;
  }
  return r.value;
});

const UNIT_NS: Readonly<Record<string, number>> = { ns: 1, us: 1e3, ms: 1e6, s: 1e9 };

/** A virtual time: ns as a number, or "<number><ns|us|ms|s>". */
const Duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const m = typeof v === 'number' ? null : /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|ms|s)\s*$/.exec(v);
  const ns = typeof v === 'number' ? v : m ? Number(m[1]) * UNIT_NS[m[2]!]! : Number.NaN;
  if (!Number.isFinite(ns) || ns < 0) {
    ctx.addIssue({
      code: 'custom',
      message: `"${String(v)}" is not a time (write e.g. 1000, "300us", "1.5ms")`,
    });
    return z.NEVER;
  }
  return Math.round(ns);
});

const Name = z.string().regex(/^[A-Za-z0-9_.:-]+$/, { error: 'use letters, digits and _ . : - only' });

const common = {
  name: Name.optional(),
  description: z.string().optional(),
  machine: z.string().min(1),
  kernel: z.enum(['6.1', 'newest']).optional(),
  seed: z.number().int().min(0).max(0xffff_ffff).optional(),
  iommu: z.enum(['off', 'strict', 'lazy']).optional(),
};

const Stream = z.strictObject({
  chunk: Size.optional(),
  window: z.number().int().min(1).max(256).optional(),
});

export const DmabufEvictSchema = z.strictObject({
  kind: z.literal('dmabuf-evict'),
  ...common,
  /** The GPU exporting the buffer (OS name or PCI address). */
  exporter: Name,
  /** The RDMA NIC importing it. */
  importer: Name,
  buffer: Size,
  stream: Stream.optional(),
  /** Another VRAM allocation at `at` that does not fit without evicting (default: just too big). */
  pressure: z.strictObject({ at: Duration, size: Size.optional() }),
  /** Move the buffer back to VRAM at `at` (the pressure buffer is freed first). */
  moveBack: z.strictObject({ at: Duration }).optional(),
  expect: z
    .strictObject({
      evictions: z.number().int().min(0).optional(),
      pageFaults: z.number().int().min(0).optional(),
    })
    .optional(),
});

export const VfioRevokeSchema = z.strictObject({
  kind: z.literal('vfio-revoke'),
  ...common,
  /** The device bound to vfio-pci whose BAR is exported. */
  device: Name,
  bar: z.number().int().min(0).max(5),
  /** The exported range of the BAR (one range: iommufd takes exactly one). */
  region: z.strictObject({ offset: Size, length: Size }),
  /** The device attached to the iommufd IOAS, and the IOVA the range is mapped at. */
  iommufd: z.strictObject({ device: Name, iova: Size, chunk: Size.optional() }),
  rdma: z.strictObject({
    nic: Name,
    chunk: Size.optional(),
    window: z.number().int().min(1).max(256).optional(),
  }),
  reset: z.strictObject({ at: Duration, duration: Duration.optional() }),
  expect: z.strictObject({ accessesAfterRevoke: z.number().int().min(0).optional() }).optional(),
});

export type DmabufEvictDoc = z.infer<typeof DmabufEvictSchema>;
export type VfioRevokeDoc = z.infer<typeof VfioRevokeSchema>;
export type DmabufScenarioDoc = DmabufEvictDoc | VfioRevokeDoc;

const Schema = z.discriminatedUnion('kind', [DmabufEvictSchema, VfioRevokeSchema]);

/** A validated dma-buf scenario and where it came from. */
export interface DmabufScenario {
  readonly doc: DmabufScenarioDoc;
  readonly name: string;
  readonly path: string;
  /** The machine argument, resolved against the scenario's directory when it names a file. */
  readonly machineRef: string;
}

/** The scenario kinds this module runs. */
export const DMABUF_SCENARIO_KINDS = ['dmabuf-evict', 'vfio-revoke'] as const;

/** Does this YAML text declare one of the dma-buf scenario kinds at top level? */
export function isDmabufScenarioText(text: string): boolean {
  const m = /^kind:\s*["']?([a-z-]+)["']?\s*(#.*)?$/m.exec(text);
  return m !== null && (DMABUF_SCENARIO_KINDS as readonly string[]).includes(m[1]!);
}

/** Is the file at `path` a dma-buf scenario (false when it cannot be read)? */
export function isDmabufScenarioFile(path: string): boolean {
  try {
    return isDmabufScenarioText(readFileSync(path, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Parse and validate a dma-buf scenario.
 * @throws MachineFileError (exit code 2) listing every problem as file:line:col.
 */
export function parseDmabufScenario(text: string, path: string): DmabufScenario {
  return parseScenarioYaml(text, path, Schema);
}

/** Read a dma-buf scenario file. @throws TopologyError (unreadable), MachineFileError (invalid). */
export function loadDmabufScenarioFile(path: string): DmabufScenario {
  return parseDmabufScenario(readScenarioText(path), path);
}

/** A scenario argument that names a dma-buf scenario (built-in name or file); null otherwise. */
export function resolveDmabufScenario(arg: string): DmabufScenario | null {
  const path = /[/\\]|\.ya?ml$/i.test(arg) || existsSync(arg) ? arg : join(SCENARIO_DIR, `${arg}.yaml`);
  return existsSync(path) && isDmabufScenarioFile(path) ? loadDmabufScenarioFile(path) : null;
}

/** The built-in dma-buf scenarios with their descriptions, sorted. */
export function listDmabufScenarios(): { name: string; description: string }[] {
  if (!existsSync(SCENARIO_DIR)) return [];
  return readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.yaml') && isDmabufScenarioFile(join(SCENARIO_DIR, f)))
    .sort()
    .map((f) => ({
      name: f.replace(/\.yaml$/, ''),
      description: loadDmabufScenarioFile(join(SCENARIO_DIR, f)).doc.description ?? '',
    }));
}
