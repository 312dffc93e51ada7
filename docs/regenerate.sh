#!/usr/bin/env bash
# Regenerate every figure and table that README.md and docs/guides/results.md show (docs/results/<experiment>/), from
# the runs in the MLflow store (default ./mlruns.db; pass --tracking-uri URI to use another). Run the experiments
# first, with the commands of the Results page:
#   ./multirun.sh --experiment robustness seed=0,1,2
#   ./multirun.sh --experiment robustness dataset.step_frac=1.0 seed=0,1 tracking.experiment=robustness_step_frac_1
#   ./multirun.sh --experiment robustness_slopes
#   ./multirun.sh --experiment robustness_scales
#   make run   (the default sweep, experiment surrogate_sweep)
# then:  docs/regenerate.sh   and commit docs/results (tests/test_readme_links.py fails on an untracked image).
# Regenerate some experiments only by naming them, e.g. after `make run`:  docs/regenerate.sh surrogate_sweep
# Each folder gets provenance.json (the code identities and git commits of its runs, the commands) and runs.csv (one
# row per run); tests/test_results_reproduce.py re-runs a default-sweep job and compares it with runs.csv.
#
# Usage: docs/regenerate.sh [--tracking-uri URI] [EXPERIMENT ...]   (default: every experiment below)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
known=(robustness robustness_step_frac_1 robustness_slopes robustness_scales surrogate_sweep)
experiments=()
extra=()
while (($#)); do
  case "$1" in
    --tracking-uri) extra+=("$1" "${2:?--tracking-uri needs a URI}"); shift 2 ;;
    --tracking-uri=*) extra+=("$1"); shift ;;
    -*) echo "docs/regenerate.sh: unknown option $1 (usage: docs/regenerate.sh [--tracking-uri URI] [EXPERIMENT ...])" >&2
        exit 2 ;;
    *)
      if [[ " ${known[*]} " != *" $1 "* ]]; then
        echo "docs/regenerate.sh: unknown experiment $1; choose from: ${known[*]}" >&2
        exit 2
      fi
      experiments+=("$1"); shift ;;
  esac
done
((${#experiments[@]})) || experiments=("${known[@]}")
for experiment in "${experiments[@]}"; do
  rm -rf "docs/results/$experiment"
  "$PYTHON" -m evoexp.job.analysis --experiment "$experiment" --out "docs/results/$experiment" \
    --formats md png --no-summary-run ${extra[@]+"${extra[@]}"}
done
