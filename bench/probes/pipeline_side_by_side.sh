#!/usr/bin/env bash
# Probe: the pipeline benchmark's hd set (2 workers) at two commits, in turn, on one machine, so that
# a change of host or of load shows as what it is and only the difference between the commits is
# read as the code's. Each commit runs from a git worktree with its own bench/pipeline_speed.py and
# this checkout's .venv and this checkout's data/sample, so the 720p set is made once (cached in
# /tmp/dfer-bench/sets) and both read the very same files.
#
#     bash bench/probes/pipeline_side_by_side.sh OLD_COMMIT [ROUNDS] [OUT_DIR]
#
# Writes OUT_DIR/new_<round>.json (this checkout) and OUT_DIR/old_<round>.json (OLD_COMMIT), rounds
# interleaved new, old, new, old, ...; default 2 rounds into bench/results/side-by-side/.
set -euo pipefail
old=${1:?usage: pipeline_side_by_side.sh OLD_COMMIT [ROUNDS] [OUT_DIR]}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${3:-$root/bench/results/side-by-side}")
tree=$(mktemp -d /tmp/side-by-side.XXXXXX)
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git -C "$root" worktree add --force --detach "$tree" "$old" >/dev/null
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  (cd "$root" && PYTHONPATH="$root" .venv/bin/python bench/pipeline_speed.py --sets hd --workers 2 \
    --sample "$root/data/sample" --out "$out/new_$round.json")
  (cd "$tree" && PYTHONPATH="$tree" "$root/.venv/bin/python" bench/pipeline_speed.py --sets hd --workers 2 \
    --sample "$root/data/sample" --out "$out/old_$round.json")
done
"$root/.venv/bin/python" - "$out" "$rounds" <<'EOF'
import json, sys
from pathlib import Path
out, rounds = Path(sys.argv[1]), int(sys.argv[2])
for side in ("new", "old"):
    for r in range(1, rounds + 1):
        d = json.loads((out / f"{side}_{r}.json").read_text())
        s = d["sets"]["hd"]
        run = s["runs"][0]
        print(f"{side} {r} ({(d['machine'].get('commit') or '?')[:7]}): pipeline {run['wall_s']} s, decode-only "
              f"{s['decode_only']['decode_clip']['wall_s']} s, ratio {run['ratio_to_decode_clip']}, "
              f"face stage {run['face_stage_s']} s")
EOF
