#!/usr/bin/env bash
# Build fuzz/corpus/<target>/ from the recorded transcripts, rule files and envelopes in
# tests/fixtures, and from the frames, manifests and receipt answers written out below.
# Idempotent: seeds are named by content hash, so re-running only adds what is missing, and
# what the fuzzer added to a corpus stays. Needs bash, jq and coreutils.
#
#   fuzz/seed.sh            seed every target
#   fuzz/seed.sh --clean    drop the corpora first
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../tests/fixtures"
corpus="$here/corpus"
# A transcript bigger than this also gives one seed per line (at most MAX_LINES of them).
BIG_BYTES=${BIG_BYTES:-4096}
MAX_LINES=${MAX_LINES:-200}

if [[ ${1:-} == --clean ]]; then rm -rf "$corpus"; fi

# seed <target> : stdin becomes one corpus file, named by its hash.
seed() {
  local dir="$corpus/$1" tmp
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.seed.XXXXXX")
  cat >"$tmp"
  if [[ -s $tmp ]]; then mv -f "$tmp" "$dir/$(sha1sum "$tmp" | cut -c1-40)"; else rm -f "$tmp"; fi
}

# transcripts <target> <files…> : one seed per transcript, and per line of the big ones.
transcripts() {
  local target=$1 f n
  shift
  for f in "$@"; do
    [[ -f $f ]] || continue
    seed "$target" <"$f"
    if (($(stat -c %s "$f") > BIG_BYTES)); then
      n=0
      while IFS= read -r line && ((n < MAX_LINES)); do
        printf '%s' "$line" | seed "$target"
        n=$((n + 1))
      done <"$f"
    fi
  done
}

shopt -s nullglob
transcripts map_line_claude "$fixtures"/transcripts/*.ndjson
transcripts map_line_codex "$fixtures"/transcripts/codex/*.ndjson
transcripts map_line_opencode "$fixtures"/transcripts/opencode/*.ndjson

# Rules: `pattern\0subject`, one seed per rule against a few subjects, and one per rule file
# with its first eight patterns at once.
subjects=(
  $'src/app.py\ndef greet(name):\n    return f"Hello, {name}"\n# success\ngreet(x)\n'
  'Bash cat /repo/.env'
  'Read /repo/app.py'
  $'notes.txt\nhello from the fake model\n'
)
for f in "$fixtures"/rules/*.json; do
  mapfile -t patterns < <(jq -r '.. | objects | select(has("pattern")) | .pattern | @json' "$f")
  for p in "${patterns[@]}"; do
    p=$(jq -rn --argjson p "$p" '$p')
    for s in "${subjects[@]}"; do printf '%s\0%s' "$p" "$s" | seed rules_compile_and_match; done
  done
  {
    jq -r '[.. | objects | select(has("pattern")) | .pattern][:8] | join("\n")' "$f"
    printf '\0%s' "${subjects[0]}"
  } | seed rules_compile_and_match
done
# A few classic regex shapes the fixtures lack (backreferences, lookbehind, classes, octal).
for p in '(a+)+$' '\1(a)' '(?<n>x)\k<n>' '[\d-z]{2,}?' '\01x' 'a{,3}' '(?<!a)b' '\u{41}' '[^]]'; do
  printf '%s\0%s' "$p" 'aaaaaaaaaa xx b A ]' | seed rules_compile_and_match
done

# Text rules: a length byte, then CLI text (stderr tails, error lines, credentials).
for f in "$fixtures"/transcripts/codex/*.stderr "$fixtures"/transcripts/opencode/*.stderr; do
  { printf '\x96'; head -c 4096 "$f"; } | seed sdk_text
done
for s in $'auth: Bearer abc.def-123\nfailed' 'key oxk_live_ABC sk-proj-abcdEFGH1234 bearer.x/y+z=' \
  $'/repo/src/a.rs\0/repo' $'/repo/./a.rs\0/repo/' $'\u00e9\u00e9\u00e9\u2028\r\n\U0001F600'; do
  printf '\x05%s' "$s" | seed sdk_text
done

# Server frames: one of each kind (v1 and v2 dispatches, the v2 ones with the envelopes of
# tests/fixtures/envelope), and the shapes the decoder must refuse.
dispatch='{"kind":"task.dispatch","run_id":"run-1","idempotency_key":"key-1","timeout_seconds":600,"task":{"title":"Fix the bug","description":"It fails.\nSee logs.","repo_path":"/repo","workspace_id":"ws-1","initiative_id":"ini-1","workstream_id":"wst-1","skill_ids":["s1"],"driver":"claude_code"}}'
printf '%s' "$dispatch" | seed server_frame
while IFS= read -r env; do
  jq -cn --argjson d "$dispatch" --argjson e "$env" '$d + {protocol_version: 2, execution_envelope: $e}' | seed server_frame
done < <(jq -c '.[] | .canonical | fromjson' "$fixtures"/envelope/vectors.json)
for f in \
  '{"kind":"task.cancel","run_id":"run-1","reason":"user"}' \
  '{"kind":"attention.resolve","decision_id":"dec_1","run_id":"run-1","driver":"claude_code","session_handle":"s","idempotency_key":"res-1","resolution":{"status":"answered","answers":{"Which tone?":"Formal"}}}' \
  '{"kind":"component.push","push_id":"p1","manifest":{"slot":"matcher","name":"m","version":2},"signature":"AAAA","bytes_base64":"AGFzbQ0AAQA="}' \
  '{"kind":"component.push","push_id":"p2","manifest":{},"url":"/api/v1/components/x.wasm"}' \
  '{"kind":"task.dispatch","kind":"task.cancel","run_id":"r"}' '{"kind":"\u0074ask.cancel","run_id":"r"}' \
  '{"kind":"presence.ack"}' '[1,2]' '"text"' '{"run_id":"r"}' '{"kind":7}'; do
  printf '%s' "$f" | seed server_frame
done

# plan-skills answers: the rule fixtures are plan-skills bodies.
for f in "$fixtures"/rules/*.json; do seed plan_skills <"$f"; done
printf '%s' '{"skills":[{"id":"a","rules":[{"pattern":"x","on":"tool_call"},{"pattern":1,"on":"file_edit"},{"pattern":"y","on":"elsewhere"}]},{"rules":[]},7]}' | seed plan_skills

# Manifests: a `.sig` body, and a pair of manifests for the injectivity check (the target
# re-signs each with its own key, so no seed needs a valid signature).
manifest='{"slot":"mapper:claude_code","name":"claude-code","version":3,"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":204800,"world":"orgx:peer/mapper-component","wit_version":"0.2.0","key_id":"0123456789abcdef"}'
printf '{"manifest":%s,"signature":"%s"}' "$manifest" "$(head -c 64 /dev/zero | base64 -w0)" | seed manifest_signature
printf '{"manifest":%s,"signature":""}\0%s' "$manifest" "${manifest/\"version\":3/\"version\":30}" | seed manifest_signature
printf '{"manifest":%s}\0K%s' "${manifest/mapper:claude_code/matcher}" 'ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg= # a comment, ed25519:bad' | seed manifest_signature

# Receipt answers: status, then operation id, digest, answer body and the stored message.
digest="sha256:$(printf 'x' | sha256sum | cut -c1-64)"
completed='{"kind":"task.completed","run_id":"run-1","outcome_kind":"shipped","started_at":"2026-12-01T00:00:00Z","completed_at":"2026-12-01T00:01:00Z","tokens_used":1200,"provider":"anthropic","source_sub_type":"api_key","source_driver":"claude_code","cost_estimate_cents":3}'
failed='{"kind":"task.failed","run_id":"run-1","reason":"the CLI exited with status 1: Bearer abc.def\nmore","recoverable":true}'
printf '\x00\x64%s\0%s\0{"ack":{"operation_id":"%s","payload_digest":"%s","disposition":"persisted"}}\0%s' key-1 "$digest" key-1 "$digest" "$completed" | seed receipt_answers
printf '\x00\x64%s\0%s\0{"ack":{"operation_id":"other","payload_digest":"%s","disposition":"duplicate"}}\0%s' key-1 "$digest" "$digest" "$failed" | seed receipt_answers
printf '\x01\x35%s\0%s\0{"reason":"run_already_terminal"}\0%s' key-1 "$digest" '{"kind":"task.step","run_id":"r"}' | seed receipt_answers
printf '\x00\x64%s\0%s\0<html>ok</html>' key-1 "$digest" | seed receipt_answers

# Driver stdout: a cap byte, a chunking seed, then real output (with CRLF and a long line).
for f in "$fixtures"/transcripts/*.ndjson "$fixtures"/transcripts/codex/*.ndjson; do
  { printf '\xc8\x07'; head -c 2048 "$f"; } | seed line_framer
done
printf '\x10\x03short\r\nline two\n%0100d\n\r\n\nlast' 0 | seed line_framer

for d in "$corpus"/*/; do printf '%s: %s seeds\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"; done
