import { describe, expect, it } from 'vitest';
import { decodeConfig } from './pci-config.js';

describe('SR-IOV virtual functions', () => {
  it('accept a config whose ID registers read 0xffff only for a VF', () => {
    const c = new Uint8Array(4096);
    c.set([0xff, 0xff, 0xff, 0xff], 0);
    c[0x0b] = 0x01;
    c[0x0a] = 0x08;
    c[0x09] = 0x02;
    expect(() => decodeConfig(c)).toThrow(/vendor 0xffff/);
    const d = decodeConfig(c, { virtfn: true });
    expect([d.vendor, d.device, d.classCode]).toEqual([0xffff, 0xffff, 0x010802]);
  });
});
