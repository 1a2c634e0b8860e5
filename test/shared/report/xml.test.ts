// The SVG tests trust this checker to reject broken markup, so it must itself be able to fail.

import { describe, expect, it } from 'vitest';
import { byClass, parseXml, textOf, XmlSyntaxError } from './xml.js';

describe('parseXml', () => {
  it('builds a tree with decoded text and attributes', () => {
    const root = parseXml(
      '<?xml version="1.0"?>\n<!-- c --><a x="1 &amp; 2"><b class="k j">t &lt;&#65;&#x42;</b><c/></a>\n',
    );
    expect(root.name).toBe('a');
    expect(root.attrs['x']).toBe('1 & 2');
    expect(root.children.map((c) => c.name)).toEqual(['b', 'c']);
    expect(textOf(byClass(root, 'j')[0]!)).toBe('t <AB');
  });

  it.each([
    ['unbalanced tags', '<a><b></a></b>'],
    ['unclosed root', '<a><b/>'],
    ['raw ampersand', '<a>x & y</a>'],
    ['unknown entity', '<a>&nbsp;</a>'],
    ['unquoted attribute', '<a x=1/>'],
    ['"<" in attribute', '<a x="<"/>'],
    ['duplicate attribute', '<a x="1" x="2"/>'],
    ['two roots', '<a/><b/>'],
    ['control character', '<a>\u0001</a>'],
  ])('rejects %s', (_name, src) => {
    expect(() => parseXml(src)).toThrow(XmlSyntaxError);
  });
});
