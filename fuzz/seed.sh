#!/usr/bin/env bash
# Build fuzz/corpus/<target>/ from the recorded transcripts and rule files in tests/fixtures.
# Idempotent: seeds are named by content hash, so re-running only adds what is missing, and
# what the fuzzer added to a corpus stays. Needs bash, jq and sha1sum.
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

for d in "$corpus"/*/; do printf '%s: %s seeds\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"; done
