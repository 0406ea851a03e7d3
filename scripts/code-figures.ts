/**
 * Figures about src/ that issue 9 tracks (and the test suite keeps true):
 * functions over N lines, files over M lines, lines over the formatter's
 * width, and top-level names defined in more than one module.
 * `*.gen.ts` files are generated and left out.
 *
 * Usage: node --import tsx scripts/code-figures.ts [--json]
 */
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

export const LIMITS = { functionLines: 100, fileLines: 450, lineWidth: 140 } as const;

export interface Figures {
  longFunctions: { where: string; name: string; lines: number }[];
  longFiles: { file: string; lines: number }[];
  wideLines: { where: string; width: number }[];
  duplicateNames: { name: string; files: string[] }[];
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".gen.ts"))
    .map((f) => path.join(dir, f))
    .sort();
}

function functionName(node: ts.Node): string {
  if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) && node.name) return node.name.getText();
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText();
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText();
  return "(anonymous)";
}

export function figures(repo: string, limits = LIMITS): Figures {
  const out: Figures = { longFunctions: [], longFiles: [], wideLines: [], duplicateNames: [] };
  const topLevel = new Map<string, string[]>();
  for (const file of sourceFiles(path.join(repo, "src"))) {
    const rel = path.relative(repo, file);
    const text = readFileSync(file, "utf8");
    const lines = text.split("\n");
    const count = text.endsWith("\n") ? lines.length - 1 : lines.length;
    if (count > limits.fileLines) out.longFiles.push({ file: rel, lines: count });
    lines.forEach((l, i) => {
      if (l.length > limits.lineWidth) out.wideLines.push({ where: `${rel}:${i + 1}`, width: l.length });
    });
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
    const visit = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && "body" in node && node.body) {
        const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
        if (end - start + 1 > limits.functionLines)
          out.longFunctions.push({ where: `${rel}:${start + 1}`, name: functionName(node), lines: end - start + 1 });
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
    for (const st of sf.statements) {
      const names: string[] = [];
      if (
        (ts.isFunctionDeclaration(st) ||
          ts.isClassDeclaration(st) ||
          ts.isInterfaceDeclaration(st) ||
          ts.isTypeAliasDeclaration(st) ||
          ts.isEnumDeclaration(st)) &&
        st.name
      )
        names.push(st.name.text);
      if (ts.isVariableStatement(st)) for (const d of st.declarationList.declarations) if (ts.isIdentifier(d.name)) names.push(d.name.text);
      for (const n of names) topLevel.set(n, [...(topLevel.get(n) ?? []), rel]);
    }
  }
  for (const [name, files] of topLevel) if (files.length > 1) out.duplicateNames.push({ name, files });
  out.longFunctions.sort((a, b) => b.lines - a.lines);
  out.longFiles.sort((a, b) => b.lines - a.lines);
  out.duplicateNames.sort((a, b) => (a.name < b.name ? -1 : 1));
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const f = figures(path.resolve(import.meta.dirname, ".."));
  if (process.argv.includes("--json")) process.stdout.write(JSON.stringify(f, null, 2) + "\n");
  else {
    console.log(`functions over ${LIMITS.functionLines} lines: ${f.longFunctions.length}`);
    for (const x of f.longFunctions) console.log(`  ${String(x.lines).padStart(4)}  ${x.name}  ${x.where}`);
    console.log(`files over ${LIMITS.fileLines} lines: ${f.longFiles.length}`);
    for (const x of f.longFiles) console.log(`  ${String(x.lines).padStart(4)}  ${x.file}`);
    console.log(
      `lines over ${LIMITS.lineWidth} characters: ${f.wideLines.length}${f.wideLines.length ? ` (widest ${Math.max(...f.wideLines.map((w) => w.width))})` : ""}`,
    );
    console.log(`top-level names defined in two or more modules: ${f.duplicateNames.length}`);
    for (const x of f.duplicateNames) console.log(`  ${x.name}: ${x.files.join(", ")}`);
  }
}
