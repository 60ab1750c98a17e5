#!/usr/bin/env bash
# The lean core vs everything: two fresh venvs (no cache of ours), their sizes, and the demo slices the core runs.
#   bash benchmarks/lean_install.sh [WORKDIR]        (default /tmp/bbdefense-lean; ~5 min with a warm pip cache)
# Expect: the core venv >= 200 MB smaller; target, attacks and certify run; serve is skipped with the
# `pip install 'bbdefense[serve]'` line in the report.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${1:-/tmp/bbdefense-lean}"
rm -rf "$W" && mkdir -p "$W"
python3 -m venv "$W/core" && "$W/core/bin/pip" install -q -c "$ROOT/constraints.txt" "$ROOT"
python3 -m venv "$W/all" && "$W/all/bin/pip" install -q -c "$ROOT/constraints.txt" "$ROOT[all]"
du -sh "$W/core" "$W/all"
cd "$W"
/usr/bin/time -f "bbdefense --help: %e s" "$W/core/bin/bbdefense" --help > /dev/null
OMP_NUM_THREADS=1 "$W/core/bin/bbdefense" demo --quick --only target --only attacks --only certify --only serve \
  --out "$W/demo" --no-progress
grep -n "Skipped" "$W/demo/report.md"
