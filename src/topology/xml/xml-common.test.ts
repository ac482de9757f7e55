import { describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { attr, children, detectXmlKind, parseDec, parseHex, parseXmlDocument } from './xml-common.js';

describe('detectXmlKind', () => {
  it('recognises hwloc and NCCL documents by their root element', () => {
    expect(
      detectXmlKind(
        '<?xml version="1.0"?>\n<!DOCTYPE topology SYSTEM "hwloc2.dtd">\n<topology version="3.0">',
      ),
    ).toBe('hwloc');
    expect(detectXmlKind('<!--\n Copyright\n-->\n<system version="1">\n  <cpu/>')).toBe('nccl');
    expect(detectXmlKind('\uFEFF<system version="2"/>')).toBe('nccl');
    expect(detectXmlKind('<topology>')).toBe('hwloc');
  });

  it('answers null for other XML and for text that is not XML', () => {
    expect(detectXmlKind('<machine name="x"/>')).toBeNull();
    expect(detectXmlKind('<systems/>')).toBeNull();
    expect(detectXmlKind('name: default\n')).toBeNull();
    expect(detectXmlKind('')).toBeNull();
  });
});

describe('parseXmlDocument', () => {
  it('reads attributes by name whatever their order, and children as arrays', () => {
    const { tag, root } = parseXmlDocument('<a y="2" x="1"><b n="1"/><b n="2"/><c/></a>', 'f.xml');
    expect(tag).toBe('a');
    expect([attr(root, 'x'), attr(root, 'y'), attr(root, 'z')]).toEqual(['1', '2', undefined]);
    expect(children(root, 'b').map((b) => attr(b, 'n'))).toEqual(['1', '2']);
    expect(children(root, 'c')).toEqual([{}]);
    expect(children(root, 'd')).toEqual([]);
  });

  it('throws a TopologyError with the line for malformed XML', () => {
    expect(() => parseXmlDocument('<a>\n<b></a>', 'f.xml')).toThrow(TopologyError);
    expect(() => parseXmlDocument('<a>\n<b></a>', 'f.xml')).toThrow(/line 2/);
    expect(() => parseXmlDocument('', 'f.xml')).toThrow(TopologyError);
  });
});

describe('number parsing', () => {
  it('reads hex with or without 0x, and decimals', () => {
    expect([
      parseHex('0x10de'),
      parseHex('10DE'),
      parseHex('0x'),
      parseHex('zz'),
      parseHex(undefined),
    ]).toEqual([0x10de, 0x10de, null, null, null]);
    expect([parseDec('25'), parseDec('-1'), parseDec('0x19'), parseDec(undefined)]).toEqual([
      25,
      -1,
      null,
      null,
    ]);
  });
});
