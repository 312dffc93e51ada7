#!/usr/bin/env bash
# Regenerate every figure and table that README.md shows (docs/results/<experiment>/), from the runs in the MLflow
# store (default ./mlruns.db; pass --tracking-uri URI to use another). Run the experiments first, with the commands
# of the README's Results section:
#   ./multirun.sh --experiment robustness seed=0,1,2
#   ./multirun.sh --experiment robustness dataset.step_frac=1.0 seed=0,1 tracking.experiment=robustness_step_frac_1
#   ./multirun.sh --experiment robustness_slopes
#   ./multirun.sh --experiment robustness_scales
#   make run   (the default sweep, experiment surrogate_sweep)
# then:  docs/regenerate.sh   and commit docs/results (tests/test_readme_links.py fails on an untracked image).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
for experiment in robustness robustness_step_frac_1 robustness_slopes robustness_scales surrogate_sweep; do
  rm -rf "docs/results/$experiment"
  "$PYTHON" -m evoexp.job.analysis --experiment "$experiment" --out "docs/results/$experiment" \
    --formats md png --no-summary-run "$@"
done
