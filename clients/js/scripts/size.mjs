// Prints the size of the client + record store + engine as a page would ship it: one ESM
// bundle of src/index.ts, minified by esbuild, then gzipped (level 9). `npm run size`.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const entry = fileURLToPath(new URL("../src/index.ts", import.meta.url));
const out = await build({ entryPoints: [entry], bundle: true, minify: true, format: "esm", platform: "browser", target: "es2022", write: false });
const code = out.outputFiles[0].contents;
const gz = gzipSync(code, { level: 9 });
console.log(`bundle: ${code.length} bytes minified, ${gz.length} bytes gzipped (limit 20480)`);
if (gz.length > 20480) {
  console.error("over the 20 kB budget");
  process.exit(1);
}
