// Scenario files: what `dmasim run` simulates, as YAML validated by zod with file:line:col errors
// (the machine-file loader's positioning helpers). Mirrors no kernel file.
//
//   name / description
//   machine: a built-in machine name, or a machine file (relative to the scenario file)
//   kernel: 6.1 | newest      seed: the one PRNG seed      iommu: off | strict | lazy | passthrough
//   buffers:   name -> { kind: anon } (process RAM) | { kind: p2pmem, provider: nvme1 } (the
//              provider's p2pmem/allocate file mapped MAP_SHARED) | { kind: kernel-p2pmem, provider }
//              (pci_alloc_p2pmem() memory used by an in-kernel user, as nvmet does)
//   fill:      namespace ranges filled with seeded random bytes before the run
//   transfers: in order; each an O_DIRECT `read` (device -> buffer) or `write` (buffer -> device) of
//              `size` bytes in `blockSize` pieces with `queueDepth` of them in flight
//   expect:    what the run must show (errors by errno name, zero root-complex bytes, ...)

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ERRNO, type Errno } from '../../kernel/errno.js';
import { parseSize } from '../../topology/machine-file/values.js';
import { parseScenarioYaml, readScenarioText } from './scenario-yaml.js';

const Size = z.unknown().transform((v, ctx) => {
  const r = parseSize(v);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.why });
    return z.NEVER;
  }
  return r.value;
});

const Name = z.string().regex(/^[A-Za-z0-9_.:-]+$/, { error: 'use letters, digits and _ . : - only' });

const ErrnoName = z.string().refine((s) => s in ERRNO, {
  error: (i) => `"${String(i.input)}" is not an errno name the model knows (e.g. EREMOTEIO, EINVAL)`,
});

const Buffer = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('anon') }),
  z.strictObject({ kind: z.literal('p2pmem'), provider: Name }),
  z.strictObject({ kind: z.literal('kernel-p2pmem'), provider: Name }),
]);

const Transfer = z.strictObject({
  name: Name,
  op: z.enum(['read', 'write'], { error: 'op is read (device -> buffer) or write (buffer -> device)' }),
  /** An NVMe controller (OS name such as nvme0, or its PCI address); its namespace 1 is the device. */
  device: Name,
  buffer: Name,
  size: Size,
  /** Byte offset on the device. */
  offset: Size.optional(),
  /** Byte offset in the buffer. */
  bufferOffset: Size.optional(),
  blockSize: Size.optional(),
  queueDepth: z.number().int().min(1).max(4096).optional(),
  /** Skip this transfer when the named one failed. */
  after: Name.optional(),
});

const Fill = z.strictObject({ device: Name, offset: Size.optional(), size: Size });

const Expect = z.strictObject({
  errors: z.array(ErrnoName).optional(),
  rootComplexBytes: z.union([z.literal('zero'), z.literal('all'), z.literal('some')]).optional(),
  hostMemoryBytes: z.union([z.literal('zero'), z.literal('some')]).optional(),
  iova: z.boolean().optional(),
  iommuFaults: z.number().int().min(0).optional(),
  untouched: z.array(Name).optional(),
});

export const ScenarioSchema = z.strictObject({
  name: Name.optional(),
  description: z.string().optional(),
  machine: z.string().min(1),
  kernel: z.enum(['6.1', 'newest']).optional(),
  seed: z.number().int().min(0).max(0xffff_ffff).optional(),
  iommu: z.enum(['off', 'strict', 'lazy', 'passthrough']).optional(),
  /** Fault injection through the driver's seams (see src/kernel/drivers/nvme/pci.ts). */
  faults: z.strictObject({ unmapBeforeDma: z.boolean().optional() }).optional(),
  buffers: z.record(Name, Buffer),
  fill: z.array(Fill).optional(),
  transfers: z.array(Transfer).min(1, { error: 'a scenario needs at least one transfer' }),
  expect: Expect.optional(),
});

export type ScenarioDoc = z.infer<typeof ScenarioSchema>;
export type TransferDoc = ScenarioDoc['transfers'][number];
export type BufferDoc = ScenarioDoc['buffers'][string];
export type ExpectDoc = NonNullable<ScenarioDoc['expect']>;

/** A validated scenario and where it came from. */
export interface Scenario {
  readonly doc: ScenarioDoc;
  readonly name: string;
  /** The file it was read from ('' for text given directly). */
  readonly path: string;
  /** The machine argument resolved against the scenario's directory when it names a file. */
  readonly machineRef: string;
}

/** Cross-field checks the shape cannot express: names that must refer to something declared. */
function semanticIssues(doc: ScenarioDoc): { path: (string | number)[]; message: string }[] {
  const out: { path: (string | number)[]; message: string }[] = [];
  const names = new Set<string>();
  doc.transfers.forEach((t, i) => {
    if (!(t.buffer in doc.buffers))
      out.push({ path: ['transfers', i, 'buffer'], message: `no buffer "${t.buffer}" in buffers:` });
    if (names.has(t.name))
      out.push({ path: ['transfers', i, 'name'], message: `transfer "${t.name}" is named twice` });
    if (t.after !== undefined && !names.has(t.after))
      out.push({ path: ['transfers', i, 'after'], message: `"${t.after}" is not an earlier transfer` });
    names.add(t.name);
    if (t.size === 0n) out.push({ path: ['transfers', i, 'size'], message: 'size must be more than 0' });
    if (t.blockSize === 0n)
      out.push({ path: ['transfers', i, 'blockSize'], message: 'blockSize must be more than 0' });
  });
  for (const [i, n] of (doc.expect?.untouched ?? []).entries())
    if (!(n in doc.buffers))
      out.push({ path: ['expect', 'untouched', i], message: `no buffer "${n}" in buffers:` });
  return out;
}

/**
 * Parse and validate scenario text.
 * @throws MachineFileError (a TopologyError: exit code 2) listing every problem as file:line:col.
 */
export function parseScenario(text: string, path: string): Scenario {
  return parseScenarioYaml(text, path, ScenarioSchema, semanticIssues);
}

/**
 * Read a scenario file.
 * @throws TopologyError when it cannot be read; MachineFileError when it is not a valid scenario.
 */
export function loadScenarioFile(path: string): Scenario {
  return parseScenario(readScenarioText(path), path);
}

/** An errno name from a string the schema accepted. */
export const asErrno = (s: string): Errno => s as Errno;

/** The built-in scenarios: scenarios/ at the package root (three levels above this module). */
export const SCENARIO_DIR = fileURLToPath(new URL('../../../scenarios/', import.meta.url));

/** Scenarios with a top-level `kind:` are run by their own runner (analysis/run/dmabuf). */
const hasKind = (path: string): boolean => /^kind:/m.test(readFileSync(path, 'utf8'));

/** Built-in scenario names with their descriptions, sorted (those of this runner: no `kind:`). */
export function listBuiltinScenarios(): { name: string; description: string }[] {
  if (!existsSync(SCENARIO_DIR)) return [];
  return readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.yaml') && !hasKind(join(SCENARIO_DIR, f)))
    .sort()
    .map((f) => {
      const sc = loadScenarioFile(join(SCENARIO_DIR, f));
      return { name: f.replace(/\.yaml$/, ''), description: sc.doc.description ?? '' };
    });
}

/** A scenario argument: a built-in name, or a path to a scenario file. @returns null for an unknown name. */
export function resolveScenario(arg: string): Scenario | null {
  if (/[/\\]|\.ya?ml$/i.test(arg) || existsSync(arg)) return loadScenarioFile(arg);
  const p = join(SCENARIO_DIR, `${arg}.yaml`);
  return existsSync(p) ? loadScenarioFile(p) : null;
}
