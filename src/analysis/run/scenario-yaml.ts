// What every scenario file format shares: reading the file, YAML with positions, schema validation
// with every problem reported as file:line:col, and resolving the machine a scenario names.

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { TopologyError } from '../../topology/errors.js';
import {
  type DocPath,
  explain,
  issuesAt,
  MachineFileError,
  parseYaml,
  sortIssues,
} from '../../topology/machine-file/parse.js';

export interface ScenarioYaml<T> {
  readonly doc: T;
  /** `name:` of the document, else the file name without .yaml. */
  readonly name: string;
  readonly path: string;
  /** The machine: a built-in name, or a file path resolved against the scenario's folder. */
  readonly machineRef: string;
}

const looksLikeFile = (m: string): boolean => /[/\\]|\.ya?ml$/i.test(m);

/**
 * Parse and validate scenario text against `schema`, then `semantic` checks on the valid document.
 * @throws MachineFileError (a TopologyError: exit code 2) listing every problem as file:line:col.
 */
export function parseScenarioYaml<T extends { readonly machine: string; readonly name?: string | undefined }>(
  text: string,
  path: string,
  schema: z.ZodType<T>,
  semantic: (doc: T) => { path: DocPath; message: string }[] = () => [],
): ScenarioYaml<T> {
  const y = parseYaml(text, path);
  const r = schema.safeParse(y.value ?? {});
  if (!r.success) {
    const found = r.error.issues.flatMap((i) => explain(i, y.value));
    throw new MachineFileError(sortIssues(issuesAt(path, y.locate, found)));
  }
  const sem = semantic(r.data);
  if (sem.length > 0) throw new MachineFileError(sortIssues(issuesAt(path, y.locate, sem)));
  const m = r.data.machine;
  const machineRef = looksLikeFile(m) && !isAbsolute(m) && path !== '' ? resolve(dirname(path), m) : m;
  return {
    doc: r.data,
    name: r.data.name ?? path.replace(/^.*[/\\]/, '').replace(/\.ya?ml$/i, ''),
    path,
    machineRef,
  };
}

/** The text of a scenario file. @throws TopologyError when it cannot be read. */
export function readScenarioText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TopologyError(path, code === 'ENOENT' ? 'no such scenario file' : `cannot read: ${String(e)}`);
  }
}
