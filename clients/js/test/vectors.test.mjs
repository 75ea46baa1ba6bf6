// The shared merge vectors (tests/vectors/merge/*.json at the repository root), generated from
// the Rust merges and checked by crates/sync-core/tests/vectors.rs too: the JS port must give
// the same bytes, and stay symmetric (swap the sides and flip `newer`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { appendOnlyBytes, canonicalJson, jsonFieldsBytes, MergeError, unionByIdBytes } from "../dist/index.js";

const dir = fileURLToPath(new URL("../../../tests/vectors/merge/", import.meta.url));
const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (v) => enc.encode(JSON.stringify(v));

function run(merge, c, swap = false) {
  const base = c.base === null ? undefined : bytes(c.base);
  let [local, remote, newer] = [bytes(c.local), bytes(c.remote), c.newer];
  if (swap) [local, remote, newer] = [remote, local, newer === "local" ? "remote" : "local"];
  switch (merge) {
    case "json_fields": return jsonFieldsBytes(base, local, remote, newer);
    case "union_by_id": return unionByIdBytes(base, local, remote, c.id_field, newer);
    case "append_only": return appendOnlyBytes(base, local, remote, c.key_field, c.order_field);
    default: throw new Error(`unknown merge ${merge}`);
  }
}

const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
test("the vector files are there", () => assert.ok(files.length >= 3, `found ${files}`));
let total = 0;
for (const f of files) {
  const doc = JSON.parse(readFileSync(join(dir, f), "utf8"));
  for (const c of doc.cases) {
    total++;
    test(`${doc.merge}: ${c.name}`, () => {
      if (c.expected_error) {
        assert.throws(() => run(doc.merge, c), (e) => e instanceof MergeError && e.kind === c.expected_error.kind && e.input === c.expected_error.input);
        return;
      }
      assert.ok("expected" in c, "the vector has no expected value: regenerate it from Rust (docs/TESTING.md)");
      const got = dec.decode(run(doc.merge, c));
      assert.equal(got, canonicalJson(c.expected));
      // Byte-identical to what serde_json writes for the expected value (sorted keys).
      assert.equal(got, canonicalJson(JSON.parse(got)));
      assert.equal(dec.decode(run(doc.merge, c, true)), got, "not symmetric");
    });
  }
}
test("enough vectors ran", () => assert.ok(total >= 30, `only ${total}`));
