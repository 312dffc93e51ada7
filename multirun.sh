#!/usr/bin/env bash
# The canonical evoexp sweep: surrogate shape x slope x seed, local parallel workers, then the analysis.
#
#   ./multirun.sh                 default size: 5 shapes x 7 slopes x 3 seeds = 105 jobs (~10 min on 2 cores)
#   ./multirun.sh --full          paper size (Zenke & Vogels 2021 setting, 8 shapes, 200 epochs; hours)
#   ./multirun.sh --experiment NAME        another sweep preset, evoexp/conf/experiment/NAME.yaml (its grid in
#                                          hydra.sweeper.params, its tracking.experiment = NAME for the analysis)
#   ./multirun.sh [...] KEY=VALUE ...      extra Hydra overrides, e.g. hydra.launcher.n_jobs=8 tracking=server
#
# Environment: PYTHON (default .venv/bin/python if present, else python), EVOEXP_WORKERS (parallel jobs, default 2).
# Prints one line per finished job (count, result, time, ETA; also in <sweep dir>/progress.log); each job's epoch lines
# go to <sweep dir>/<job>/__main__.log (hydra/job_logging=verbose shows them too). The sweep is one parent run in
# MLflow with its jobs nested; the analysis attaches its tables and figures to it.
# Re-running resumes: jobs whose config already has a FINISHED run in the MLflow store are skipped, and the runs of
# jobs killed outright (SIGKILL) are closed as KILLED first.
# Exit status: non-zero if any job failed (diverged runs are results, not failures) or the analysis failed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

experiment=surrogate_sweep
case "${1:-}" in
  --full) experiment=surrogate_sweep_full; shift ;;
  --experiment) experiment="${2:?--experiment needs a preset name}"; shift 2 ;;
esac

status=0
"$PYTHON" -m evoexp --multirun "experiment=$experiment" hydra/launcher=parallel "$@" || status=$?

# The analysis reads the experiment the jobs logged to (the preset's, unless overridden) from the same store.
analysis_args=(--experiment "$experiment")
for arg in "$@"; do
  case "$arg" in
    tracking.experiment=*) analysis_args=(--experiment "${arg#tracking.experiment=}") ;;
    tracking=server) analysis_args+=(--tracking-uri "${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000}") ;;
    tracking.uri=*) analysis_args+=(--tracking-uri "${arg#tracking.uri=}") ;;
  esac
done
"$PYTHON" -m evoexp.job.analysis "${analysis_args[@]}" || status=$?
exit "$status"
