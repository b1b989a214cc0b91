// Builds the widget into ../oneinbox_asgi/static (committed; CI rebuilds and diffs).
//
//   widget.js              the loader (stable name; served with a short cache life)
//   call-<hash>.js         the call chunk holding livekit-client (content-hashed, immutable)
//   widget-<hash>.css      both stylesheets, for browsers without adoptedStyleSheets
//   THIRD_PARTY_LICENSES.txt  licences of the npm packages bundled into the chunk
//
// Deterministic: no timestamps, no absolute paths; names derive from content only.
// Fails when a bundle is over its size budget (PERFORMANCE.md).

import { createHash } from "node:crypto";
import { readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "oneinbox_asgi", "static");
const BUDGET = { loader: 6 * 1024, chunk: 160 * 1024 }; // gzip -9 bytes

const common = {
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: ["es2020"],
  write: false,
  legalComments: "none",
  charset: "ascii",
  sourcemap: false,
  absWorkingDir: here,
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
};

const hash = (buf, algo = "sha256") => createHash(algo).update(buf).digest();
const short = (buf) => hash(buf).toString("hex").slice(0, 12);
const gz = (buf) => gzipSync(buf, { level: 9 }).length;

// 1. The stylesheets: widget.css (the loader's, inlined for adoptedStyleSheets) and
// call.css (the call chunk's, inlined into it). The file, for browsers without
// adoptedStyleSheets, holds both.
const minifyCss = async (name) =>
  (
    await esbuild.transform(readFileSync(join(here, "src", name), "utf8"), {
      loader: "css",
      minify: true,
      charset: "ascii",
    })
  ).code.trim();
const css = await minifyCss("widget.css");
const callCss = await minifyCss("call.css");
const cssBuf = Buffer.from(css + "\n" + callCss + "\n");
const cssName = `widget-${short(cssBuf)}.css`;

// 2. The call chunk: the loader embeds its name and SRI hash.
const chunkBuild = await esbuild.build({
  ...common,
  entryPoints: ["src/call.ts"],
  metafile: true,
  outfile: "call.js",
  define: { ...common.define, __CALL_CSS__: JSON.stringify(callCss) },
});
const chunk = Buffer.from(chunkBuild.outputFiles[0].contents);
const chunkName = `call-${short(chunk)}.js`;
const chunkSri = `sha384-${hash(chunk, "sha384").toString("base64")}`;

// 3. The loader.
const loaderBuild = await esbuild.build({
  ...common,
  entryPoints: ["src/loader.ts"],
  metafile: true,
  outfile: "widget.js",
  // Short names for properties that only the loader uses (never across the chunk
  // boundary, never public): the 6 KB budget is tight.
  mangleProps: /^(done|endToken|answer|stream|promise|attempt|session)$/,
  define: {
    ...common.define,
    __CHUNK__: JSON.stringify(chunkName),
    __CHUNK_SRI__: JSON.stringify(chunkSri),
    __CSS__: JSON.stringify(css),
    __CSS_FILE__: JSON.stringify(cssName),
  },
});
const loader = Buffer.from(loaderBuild.outputFiles[0].contents);
const leaked = Object.keys(loaderBuild.metafile.inputs).filter((p) => p.includes("node_modules"));
if (leaked.length) throw new Error(`the loader must not bundle npm code: ${leaked.join(", ")}`);

// 4. Licences of what the chunk bundles: livekit-client and its runtime dependency tree
// (its dist file has its own dependencies inlined), as locked in package-lock.json.
const lock = JSON.parse(readFileSync(join(here, "package-lock.json"), "utf8"));
const packages = new Map();
for (const [path, meta] of Object.entries(lock.packages)) {
  if (!path.startsWith("node_modules/") || meta.dev || meta.optional) continue;
  const dir = join(here, path);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).sort().find((f) => /^licen[cs]e/i.test(f));
  const text = file ? readFileSync(join(dir, file), "utf8").trim() : "(no licence file in the package)";
  packages.set(path, `${pkg.name}@${pkg.version} (${pkg.license ?? "unknown"})\n\n${text}\n`);
}
if (!Object.keys(chunkBuild.metafile.inputs).some((p) => p.includes("node_modules/livekit-client/"))) {
  throw new Error("the call chunk does not bundle livekit-client");
}
const notices = Buffer.from(
  "Third-party software bundled into the call chunk (call-*.js) of oneinbox-asgi's widget.\n\n" +
    [...packages.keys()]
      .sort()
      .map((k) => packages.get(k))
      .join("\n" + "=".repeat(78) + "\n\n"),
);

// 5. Write, removing stale generated files (and nothing else).
mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) {
  if (/^(widget\.js|call-[0-9a-f]+\.js|widget-[0-9a-f]+\.css|THIRD_PARTY_LICENSES\.txt)$/.test(f)) {
    rmSync(join(out, f));
  }
}
const files = [
  ["widget.js", loader, BUDGET.loader],
  [chunkName, chunk, BUDGET.chunk],
  [cssName, cssBuf],
  ["THIRD_PARTY_LICENSES.txt", notices],
];
let over = false;
for (const [name, buf, budget] of files) {
  writeFileSync(join(out, name), buf);
  const size = gz(buf);
  const flag = budget && size > budget ? `  OVER BUDGET (${budget})` : "";
  if (flag) over = true;
  console.log(`${relative(process.cwd(), join(out, name)).padEnd(48)} ${String(buf.length).padStart(8)} B  ${String(size).padStart(7)} B gzip${flag}`);
}
if (over) process.exit(1);
if (!existsSync(join(out, "widget.js"))) process.exit(1);
