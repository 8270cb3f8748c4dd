import { JSDOM } from "jsdom";
import { readFileSync } from "node:fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
const text = readFileSync(process.argv[2], "utf8");
try {
  const result = await mermaid.parse(text);
  console.log(JSON.stringify(result));
} catch (e) {
  console.error("PARSE ERROR: " + e.message);
  process.exit(1);
}
