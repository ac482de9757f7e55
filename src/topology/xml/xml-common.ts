// What the two XML topology readers share: a validating parse into plain element records, attribute
// access by name (so attribute order never matters), hex and decimal number parsing, and the check
// that tells an hwloc topology from an NCCL one.
//
// Nothing here mirrors a kernel file: hwloc (`hwloc/topology-xml.c`) and NCCL (`src/graph/xml.cc`)
// write these files; the kernel never reads them.

import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { TopologyError } from '../errors.js';

/** One parsed element: attributes under `@_name`, child elements as arrays under their tag name. */
export type XmlElement = { readonly [key: string]: unknown };

export type XmlKind = 'hwloc' | 'nccl';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Every child element becomes an array, so one child and many children read the same way.
  isArray: (_name, _path, _leaf, isAttribute) => !isAttribute,
  parseAttributeValue: false,
  parseTagValue: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

/**
 * Validate and parse an XML document.
 * @returns the root element and its tag name.
 * @throws TopologyError naming `path` and the line when the text is not well-formed XML.
 */
export function parseXmlDocument(
  text: string,
  path: string,
): { readonly tag: string; readonly root: XmlElement } {
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    const { msg, line } = valid.err;
    throw new TopologyError(path, `not well-formed XML (line ${line}): ${msg}`);
  }
  const doc = parser.parse(text) as Record<string, unknown>;
  const tag = Object.keys(doc).find((k) => !k.startsWith('@_') && !k.startsWith('#') && !k.startsWith('!'));
  const root = tag === undefined ? undefined : (doc[tag] as unknown[])[0];
  if (tag === undefined) throw new TopologyError(path, 'the XML document has no root element');
  return { tag, root: asElement(root) };
}

/** Self-closing elements without attributes parse as ''; treat them as empty elements. */
const asElement = (v: unknown): XmlElement => (typeof v === 'object' && v !== null ? (v as XmlElement) : {});

/**
 * The value of attribute `name` of an element.
 * @returns the string, or undefined when the attribute is absent.
 */
export function attr(el: XmlElement, name: string): string | undefined {
  const v = el[`@_${name}`];
  return typeof v === 'string' ? v : undefined;
}

/**
 * Child elements with tag `tag`.
 * @returns them in document order; empty when there are none.
 */
export function children(el: XmlElement, tag: string): readonly XmlElement[] {
  const v = el[tag];
  return Array.isArray(v) ? v.map(asElement) : [];
}

/**
 * Parse "0x10de" or "10de" as hex.
 * @returns the number, or null when absent or malformed.
 */
export function parseHex(s: string | undefined): number | null {
  if (s === undefined) return null;
  const m = /^\s*(?:0x)?([0-9a-f]+)\s*$/i.exec(s);
  return m ? Number.parseInt(m[1]!, 16) : null;
}

/**
 * Parse a decimal integer such as "-1" or "25".
 * @returns the number, or null when absent or malformed.
 */
export function parseDec(s: string | undefined): number | null {
  if (s === undefined) return null;
  const m = /^\s*(-?[0-9]+)\s*$/.exec(s);
  return m ? Number.parseInt(m[1]!, 10) : null;
}

/**
 * Which reader a document needs, from its root element: `<topology>` is hwloc (lstopo -.xml),
 * `<system>` is NCCL (NCCL_TOPO_FILE / NCCL_TOPO_DUMP_FILE). Only the prolog is scanned, not parsed.
 * @returns 'hwloc', 'nccl', or null for anything else (including text that is not XML).
 */
export function detectXmlKind(text: string): XmlKind | null {
  // Skip the XML declaration, processing instructions, comments and the DOCTYPE before the root.
  const prolog = /^(?:\s+|<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<!DOCTYPE[^>[]*(?:\[[\s\S]*?\])?\s*>)*/;
  const body = text.replace(/^\uFEFF/, '');
  const rest = body.slice(prolog.exec(body)?.[0].length ?? 0);
  const m = /^<([A-Za-z_][\w.-]*)[\s/>]/.exec(rest);
  if (!m) return null;
  if (m[1] === 'topology') return 'hwloc';
  if (m[1] === 'system') return 'nccl';
  return null;
}

/**
 * The unknown value the XML readers record for config-space facts (port type, ACS, SR-IOV).
 * @returns `{ state: 'unknown', reason: '<format> has no config space' }`.
 */
export const noConfigSpace = (format: string): { readonly state: 'unknown'; readonly reason: string } => ({
  state: 'unknown',
  reason: `${format} has no config space`,
});
