#!/usr/bin/env bash
# Opens a run's report.html in headless Chromium and checks that the page the
# browser built has every section, with drawings where there should be some.
#
#   scripts/check-report.sh runs/paper-variants
set -euo pipefail
dir=${1:?usage: scripts/check-report.sh RUN_DIRECTORY}
page=$(cd "$dir" && pwd)/report.html
test -s "$page" || { echo "error: $page is missing or empty" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
dom=$(chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$profile" --virtual-time-budget=2000 --dump-dom "file://$page" 2>/dev/null)
missing=0
for id in summary findings accuracy layers agreement class-top neurons tables provenance; do
    if ! grep -q "<section id=\"$id\"" <<<"$dom"; then
        echo "error: $page has no section '$id' in the browser" >&2
        missing=1
    fi
done
svgs=$(grep -o "<svg" <<<"$dom" | wc -l)
if [ "$svgs" -lt 3 ]; then
    echo "error: $page shows only $svgs drawings" >&2
    missing=1
fi
[ "$missing" -eq 0 ] && echo "report: $page has every section and $svgs drawings in Chromium"
exit "$missing"
