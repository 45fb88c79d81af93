// Contract-digest vectors (spec §7.5) computed by JavaScript itself, the server's language:
// keys sorted (UTF-16 code units, Array.prototype.sort's default), objects rebuilt in that
// order (so index-like keys come first, as JavaScript objects keep them), JSON.stringify.
// Usage: node scripts/envelope-vectors.js tests/fixtures/envelope/cases.json > tests/fixtures/envelope/vectors.json
const crypto = require("crypto");
const fs = require("fs");
const EXCLUDED = ["digest", "receiptDigest", "merkleRoot", "signature"];
function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v !== null && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = canon(v[k]);
    return o;
  }
  return v;
}
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = cases.map(({ name, value }) => {
  let top = value;
  if (top !== null && typeof top === "object" && !Array.isArray(top)) {
    top = Object.fromEntries(Object.entries(top).filter(([k]) => !EXCLUDED.includes(k)));
  }
  const canonical = JSON.stringify(canon(top));
  const digest = "sha256:" + crypto.createHash("sha256").update(canonical, "utf8").digest("hex");
  return { name, canonical, digest };
});
process.stdout.write(JSON.stringify(out, null, 2) + "\n");
