/**
 * Just enough XML for EC2 Query API responses: elements, text and the five
 * predefined plus numeric entities; attributes, comments, CDATA and the XML
 * declaration are skipped. Hand-written because EC2's responses are plain
 * data trees and an XML library would be the largest module berth loads.
 */

export interface XmlNode {
  name: string;
  children: XmlNode[];
  text: string;
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, e: string) => {
    if (e === "amp") return "&";
    if (e === "lt") return "<";
    if (e === "gt") return ">";
    if (e === "quot") return '"';
    if (e === "apos") return "'";
    return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

/** One token: CDATA (1), a comment, a declaration, a DOCTYPE, an end tag (2), a start tag (3, attributes 4, `/` 5), text (6). */
const XML_TOKEN = [
  /<!\[CDATA\[([\s\S]*?)\]\]>/.source,
  /<!--[\s\S]*?-->/.source,
  /<\?[\s\S]*?\?>/.source,
  /<!DOCTYPE[^>]*>/.source,
  /<\/\s*([^\s>]+)\s*>/.source,
  /<([^\s/>]+)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/.source,
  /([^<]+)/.source,
].join("|");

/** Parse a document; throws on unbalanced tags. */
export function parseXml(src: string): XmlNode {
  const root: XmlNode = { name: "#document", children: [], text: "" };
  const stack: XmlNode[] = [root];
  const re = new RegExp(XML_TOKEN, "g");
  for (let m = re.exec(src); m; m = re.exec(src)) {
    const top = stack[stack.length - 1]!;
    if (m[1] !== undefined) top.text += m[1];
    else if (m[2] !== undefined) {
      const name = m[2].replace(/^.*:/, "");
      if (top.name !== name || stack.length === 1) throw new Error(`unexpected </${m[2]}> in XML`);
      stack.pop();
    } else if (m[3] !== undefined) {
      const node: XmlNode = { name: m[3].replace(/^.*:/, ""), children: [], text: "" };
      top.children.push(node);
      if (m[5] !== "/") stack.push(node);
    } else if (m[6] !== undefined) top.text += decodeEntities(m[6]);
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]!.name}> in XML`);
  return root;
}

/** The first descendant reached by following child names, e.g. `child(n, "networkInfo", "ipv4AddressesPerInterface")`. */
export function child(n: XmlNode | undefined, ...names: string[]): XmlNode | undefined {
  let cur = n;
  for (const name of names) cur = cur?.children.find((c) => c.name === name);
  return cur;
}

export function children(n: XmlNode | undefined, name: string): XmlNode[] {
  return n ? n.children.filter((c) => c.name === name) : [];
}

export function textOf(n: XmlNode | undefined): string | undefined {
  return n ? n.text.trim() : undefined;
}
