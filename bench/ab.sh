#!/usr/bin/env bash
# Before/after on a noisy machine: the suite's rows for BASE (a commit, checked out in a temporary worktree) and for
# this tree, alternating ROUNDS times, each peer in the same process as its row (ratios within one run are what count).
# usage: bash bench/ab.sh BASE ROWS [ROUNDS]    e.g. bash bench/ab.sh 19af492 conv,mnist_example 2
set -euo pipefail
base=$1; rows=$2; rounds=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(mktemp -d)
git -C "$here" worktree add -q --detach "$tree" "$base"
trap 'git -C "$here" worktree remove --force "$tree"' EXIT
for r in $(seq "$rounds"); do
  for t in "$tree" "$here"; do
    echo "== $([ "$t" = "$here" ] && echo HEAD || echo "$base"), round $r"
    (cd "$t" && PYTHONPATH="$t" python bench/bench_suite.py --no-compile --only "$rows" 2>&1 | grep -E "^[A-Za-z]|first call|per call" | grep -v "^#")
  done
done
