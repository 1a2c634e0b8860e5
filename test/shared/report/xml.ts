// A minimal XML well-formedness checker and tree builder for the SVG tests: prolog, elements,
// quoted attributes, entity/character references and comments, which is all the charts emit.

export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  readonly children: readonly XmlElement[];
  /** Decoded character data directly inside this element (not in its children). */
  readonly text: string;
}

export class XmlSyntaxError extends Error {}

export function parseXml(src: string): XmlElement {
  let i = 0;
  const fail = (msg: string): never => {
    throw new XmlSyntaxError(`${msg} at offset ${i}: ${JSON.stringify(src.slice(i, i + 40))}`);
  };
  for (const ch of src) {
    const cp = ch.codePointAt(0)!;
    const ok =
      cp === 0x9 ||
      cp === 0xa ||
      cp === 0xd ||
      (cp >= 0x20 && cp <= 0xd7ff) ||
      (cp >= 0xe000 && cp <= 0xfffd) ||
      cp >= 0x10000;
    if (!ok) fail(`character U+${cp.toString(16)} is not allowed in XML`);
  }

  const isNameStart = (c: string | undefined) => c !== undefined && /[A-Za-z_:]/.test(c);
  const isNameChar = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_:.-]/.test(c);
  const readName = (): string => {
    const start = i;
    if (!isNameStart(src[i])) fail('expected a name');
    while (isNameChar(src[i])) i++;
    return src.slice(start, i);
  };
  const skipSpace = (): boolean => {
    const start = i;
    while (src[i] === ' ' || src[i] === '\n' || src[i] === '\t' || src[i] === '\r') i++;
    return i > start;
  };
  const expect = (s: string): void => {
    if (!src.startsWith(s, i)) fail(`expected ${JSON.stringify(s)}`);
    i += s.length;
  };
  const skipComment = (): void => {
    const end = src.indexOf('-->', i + 4);
    if (end < 0) fail('unterminated comment');
    i = end + 3;
  };
  const skipMisc = (): void => {
    for (;;) {
      skipSpace();
      if (src.startsWith('<!--', i)) skipComment();
      else return;
    }
  };
  const decode = (raw: string): string => {
    let out = '';
    let k = 0;
    while (k < raw.length) {
      const amp = raw.indexOf('&', k);
      if (amp < 0) {
        out += raw.slice(k);
        break;
      }
      out += raw.slice(k, amp);
      const semi = raw.indexOf(';', amp);
      const ref = semi < 0 ? '' : raw.slice(amp + 1, semi);
      const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
      if (ref in named) out += named[ref];
      else if (/^#[0-9]+$/.test(ref)) out += String.fromCodePoint(Number(ref.slice(1)));
      else if (/^#x[0-9a-fA-F]+$/.test(ref)) out += String.fromCodePoint(Number.parseInt(ref.slice(2), 16));
      else fail(`bad reference ${JSON.stringify(raw.slice(amp, amp + 12))}`);
      k = semi + 1;
    }
    return out;
  };

  const parseElement = (): XmlElement => {
    expect('<');
    const name = readName();
    const attrs: Record<string, string> = {};
    for (;;) {
      const spaced = skipSpace();
      if (src.startsWith('/>', i)) {
        i += 2;
        return { name, attrs, children: [], text: '' };
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      if (!spaced) fail('expected whitespace before an attribute');
      const attr = readName();
      skipSpace();
      expect('=');
      skipSpace();
      const quote = src[i];
      if (quote !== '"' && quote !== "'") fail('attribute value must be quoted');
      const end = src.indexOf(quote!, i + 1);
      if (end < 0) fail('unterminated attribute value');
      const raw = src.slice(i + 1, end);
      if (raw.includes('<')) fail('"<" inside an attribute value');
      if (attr in attrs) fail(`duplicate attribute ${attr}`);
      attrs[attr] = decode(raw);
      i = end + 1;
    }
    const children: XmlElement[] = [];
    let text = '';
    for (;;) {
      if (i >= src.length) fail(`<${name}> is never closed`);
      if (src.startsWith('</', i)) {
        i += 2;
        const closing = readName();
        if (closing !== name) fail(`</${closing}> closes <${name}>`);
        skipSpace();
        expect('>');
        return { name, attrs, children, text };
      }
      if (src.startsWith('<!--', i)) skipComment();
      else if (src[i] === '<') children.push(parseElement());
      else {
        const next = src.indexOf('<', i);
        const end = next < 0 ? src.length : next;
        text += decode(src.slice(i, end));
        i = end;
      }
    }
  };

  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('unterminated XML declaration');
    i = end + 2;
  }
  skipMisc();
  const root = parseElement();
  skipMisc();
  if (i !== src.length) fail('content after the root element');
  return root;
}

/** Every element below `root` (depth first, document order) that satisfies `pred`. */
export function findAll(root: XmlElement, pred: (e: XmlElement) => boolean): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement): void => {
    for (const c of e.children) {
      if (pred(c)) out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

export function byClass(root: XmlElement, cls: string): XmlElement[] {
  return findAll(root, (e) => (e.attrs['class'] ?? '').split(' ').includes(cls));
}

/** Direct text of an element, then that of its descendants (enough for leaf <text> nodes). */
export function textOf(e: XmlElement): string {
  return e.text + e.children.map(textOf).join('');
}
