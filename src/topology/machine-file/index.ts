// Machine files: machines designed in YAML (docs/machine-file.md), and the built-in ones shipped in
// machines/ at the repository root. Every entry point returns a Machine whose functions carry encoded
// config bytes and on which the kernel's boot-time ACS programming has run (its log lines are in
// machine.notes as "kernel: ..."; machineFromYaml() also returns them apart).

import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYamlValue } from 'yaml';
import type { Machine } from '../../hw/pci.js';
import { TopologyError } from '../errors.js';
import { type BuiltMachine, buildFromDoc, MachineDesignError, type MachineFileOptions } from './build.js';
import { issuesAt, MachineFileError, parseMachineDoc, sortIssues } from './parse.js';

export type { BuiltMachine, MachineFileOptions } from './build.js';
export { type GenerateOptions, generateMachine } from './generate.js';
export { formatIssue, MachineFileError, type MachineFileIssue } from './parse.js';

/** The built-in machine `default` stands for. */
export const DEFAULT_BUILTIN = 'xeon-2s-switches';

/**
 * Where the built-in machine files live: machines/ at the package root, three levels above this
 * module both in src/topology/machine-file/ (tsx) and in dist/topology/machine-file/ (after tsc).
 */
export const BUILTIN_DIR = fileURLToPath(new URL('../../../machines/', import.meta.url));

/**
 * Build a machine from machine-file text, keeping the boot log apart.
 * @throws MachineFileError (a TopologyError) listing every problem as file:line:col: path: what.
 */
export function machineFromYaml(text: string, path: string, opts: MachineFileOptions = {}): BuiltMachine {
  const { doc, locate } = parseMachineDoc(text, path);
  const name = doc.name ?? basename(path).replace(/\.ya?ml$/i, '');
  try {
    return buildFromDoc(doc, name, { source: { kind: 'machine-file', path }, ...opts });
  } catch (e) {
    if (!(e instanceof MachineDesignError)) throw e;
    throw new MachineFileError(sortIssues(issuesAt(path, locate, e.problems)));
  }
}

/**
 * Parse machine-file text into a Machine (`path` only names it in messages).
 * @throws MachineFileError for syntax, schema and design problems.
 */
export const parseMachineYaml = (text: string, path: string, opts: MachineFileOptions = {}): Machine =>
  machineFromYaml(text, path, opts).machine;

/**
 * Read and build a machine file.
 * @throws TopologyError when the file cannot be read; MachineFileError when it is not a valid machine.
 */
export function loadMachineFile(path: string, opts: MachineFileOptions = {}): Machine {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TopologyError(path, code === 'ENOENT' ? 'no such machine file' : `cannot read: ${String(e)}`, {
      cause: e,
    });
  }
  return parseMachineYaml(text, path, opts);
}

export interface BuiltinMachineInfo {
  readonly name: string;
  readonly description: string;
  readonly path: string;
  readonly isDefault: boolean;
}

/** The built-in machines, by name (the default one is marked). */
export function listBuiltinMachines(): BuiltinMachineInfo[] {
  return readdirSync(BUILTIN_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => {
      const path = join(BUILTIN_DIR, f);
      const name = f.replace(/\.yaml$/, '');
      const v = parseYamlValue(readFileSync(path, 'utf8')) as { description?: unknown } | null;
      const description = typeof v?.description === 'string' ? v.description : '';
      return { name, description, path, isDefault: name === DEFAULT_BUILTIN };
    });
}

/**
 * Load a built-in machine by name; `default` is DEFAULT_BUILTIN.
 * @throws TopologyError naming the built-in machines when there is none by that name.
 */
export function loadBuiltinMachine(name: string, opts: MachineFileOptions = {}): Machine {
  const want = name === 'default' ? DEFAULT_BUILTIN : name;
  const found = listBuiltinMachines().find((m) => m.name === want);
  if (!found) {
    const names = listBuiltinMachines().map((m) => m.name);
    throw new TopologyError(name, `no built-in machine by that name (built-in: ${names.join(', ')})`);
  }
  const text = readFileSync(found.path, 'utf8');
  return machineFromYaml(text, `machines/${want}.yaml`, {
    source: { kind: 'builtin', path: `machines/${want}.yaml` },
    ...opts,
  }).machine;
}
