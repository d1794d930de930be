// `npm run build`: bundle js/markdown.js (and markdown-it) into streamnb/static/.
//
// Output, both committed and checked by .ci/check-bundle.sh (rebuilt from the lockfile
// with `npm ci`, then compared byte for byte):
//   streamnb/static/markdown.bundle.js           one minified ES module
//   streamnb/static/markdown.bundle.LICENSES.txt  the licenses of the bundled packages
// The build is deterministic: esbuild is pinned exactly, inputs come from the lockfile,
// and nothing time- or path-dependent is written.

import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(ROOT, "streamnb", "static", "markdown.bundle.js");
const LICENSES = join(ROOT, "streamnb", "static", "markdown.bundle.LICENSES.txt");

const result = await build({
  absWorkingDir: ROOT,
  entryPoints: ["js/markdown.js"],
  outfile: OUT,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  minify: true,
  treeShaking: true,
  charset: "utf8",
  legalComments: "none", // the licenses go to LICENSES, whole
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
  banner: {
    js:
      "// streamnb Markdown renderer: built from js/markdown.js by `npm run build`; do not edit." +
      "\n// Bundled packages and their licenses: markdown.bundle.LICENSES.txt",
  },
});

// The packages esbuild put into the bundle, from the paths of its inputs.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (match) packages.add(match[1]);
}
const sections = [...packages].sort().map((name) => {
  const dir = join(ROOT, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir)
    .sort()
    .find((f) => /^(licen[cs]e|copying)/i.test(f));
  const text = file ? readFileSync(join(dir, file), "utf8").trim() : `License: ${meta.license}`;
  return `${name} ${meta.version} (${meta.license})\n${"-".repeat(60)}\n${text}\n`;
});
writeFileSync(
  LICENSES,
  "Third-party code in markdown.bundle.js (built by `npm run build`).\n\n" +
    sections.join("\n"),
);
const bytes = readFileSync(OUT).length;
console.log(`wrote ${OUT} (${bytes} bytes; ${packages.size} packages: ${[...packages].sort().join(", ")})`);
