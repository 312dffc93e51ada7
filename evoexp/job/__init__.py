"""The job wing: everything that knows Hydra, MLflow or a :class:`~evoexp.job.config.Config`.

The science below (functional, surrogate, models, data, verification, training, analysis) never imports it
(enforced by the import-linter contracts in ``pyproject.toml``).

* :mod:`evoexp.job.task` -- the Hydra task function: one job from a composed config.
* :mod:`evoexp.job.config` -- config schemas, validation, the config store, config/code identity.
* :mod:`evoexp.job.build` -- objects (dataset, models, surrogate, options) from a config: one route for every network.
* :mod:`evoexp.job.prepare` -- what a job builds and checks before anything runs (data, network, surrogate, ANN).
* :mod:`evoexp.job.run` -- one job without Hydra: train, verify, compare with the ANN.
* :mod:`evoexp.job.tracking` -- the MLflow store and the run lifecycle: open, claim, end, resume, reap runs.
* :mod:`evoexp.job.run_logger` -- a job's run as the job logs into it, in batches from a background thread.
* :mod:`evoexp.job.mlflow_values` -- how values are written into MLflow: params, tags, metric names, datasets, URLs.
* :mod:`evoexp.job.liveness` -- whether a RUNNING run's owner still lives: owner record, heartbeats, ghost runs.
* :mod:`evoexp.job.store_errors` -- when the tracking store fails: ``TrackingUnavailable``, one-line store errors.
* :mod:`evoexp.job.sweep` -- sweep-level code: resumable runs, ANN-baseline reuse, the Hydra callback.
* :mod:`evoexp.job.preflight` -- what a sweep checks before it opens anything (every swept value, its directory).
* :mod:`evoexp.job.abort` -- closing what a command opened when Ctrl-C, SIGTERM or an error ends it early; SIGTERM
  as :class:`~evoexp.job.abort.JobTerminated`.
* :mod:`evoexp.job.files` -- atomic writes: a record is whole or absent, never truncated.
* :mod:`evoexp.job.outcome` -- the outcome record a job leaves for its sweep.
* :mod:`evoexp.job.summary` -- verdicts and the run/sweep summaries.
* :mod:`evoexp.job.progress` -- run naming and sweep progress.
* :mod:`evoexp.job.ui` -- how an experiment looks in the MLflow UI: its saved jobs view and its description.
* :mod:`evoexp.job.outputs` -- files written into a job's output directory.
* :mod:`evoexp.job.analysis` -- analysis of an experiment in the store (``python -m evoexp.job.analysis``).
"""
