#!/usr/bin/env bash
# Checks that every code block of a doc that follows a line
# "<!-- file: PATH -->" equals the file PATH (relative to the source
# tree), so that a page showing compiled code cannot drift from it.
#   docs_blocks.sh SOURCE_DIR DOC
set -euo pipefail
src=$1
doc=$2
checked=0
failed=0
while IFS= read -r path; do
  block=$(awk -v want="<!-- file: $path -->" '
    $0 == want { found = 1; next }
    found == 1 && /^```/ { inside = 1; found = 2; next }
    inside && /^```$/ { exit }
    inside { print }' "$src/$doc")
  if [[ "$block" != "$(cat "$src/$path")" ]]; then
    echo "$doc: the block of $path differs from the file:"
    diff <(printf '%s\n' "$block") "$src/$path" | head -20 || true
    failed=1
  fi
  checked=$((checked + 1))
done < <(sed -n 's/^<!-- file: \(.*\) -->$/\1/p' "$src/$doc")
if [[ $checked -eq 0 ]]; then
  echo "$doc: no block names a file"
  exit 1
fi
if [[ $failed -eq 0 ]]; then
  echo "$doc: $checked block(s) equal their files"
fi
exit $failed
