"""Faults a user meets: concurrent and repeated sweeps, Ctrl-C, full disks, read-only stores, dead servers, bad paths.

Every test runs the real thing: real subprocesses (``python -m evoexp``), SIGINT to the process group, a small tmpfs
filled or remounted read-only (skipped, with the reason, where mounting is not permitted), a real ``mlflow server``
stopped mid-sweep, two invocations at once. The promise checked throughout: nothing is left RUNNING, no result is
lost or counted twice, and what went wrong is said in one line. See docs/guides/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from omegaconf import DictConfig

from evoexp.analysis.aggregate import group_columns
from evoexp.job.analysis import load_runs, run_analysis
from evoexp.job.config import TrackingConfig, config_hash, load_config
from evoexp.job.outcome import OUTCOME_FILE, JobOutcome, write_outcome
from evoexp.job.preflight import PreflightError, claim_sweep_dir
from evoexp.job.run_logger import TrackedRun
from evoexp.job.store_errors import TrackingUnavailable
from evoexp.job.summary import jobs_text
from evoexp.job.sweep import read_outcomes
from evoexp.job.task import JobContext, execute
from evoexp.job.tracking import ConfigTaken, MlflowTracker
from evoexp.keys import Tags

REPO = Path(__file__).resolve().parents[1]
JOB_LINE = re.compile(r"^\[(\d+|\?)/(\d+)\] ")


def evoexp_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def evoexp(cwd: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evoexp", *args],
        cwd=cwd,
        env=evoexp_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """Kill the process group of every command a test started and left running (a failed assertion)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _foreground_signals() -> None:
    """Ctrl-C as a terminal delivers it: SIGINT handled by default, even when the test run itself ignores it.

    A test run started in the background by a non-interactive shell (``pytest ... &``, ``nohup``) has SIGINT ignored,
    children inherit that, and Python then installs no KeyboardInterrupt handler: the sweep would never see Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_evoexp(cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``python -m evoexp`` in its own process group (as a shell runs a foreground command), output piped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "evoexp", *args],
        cwd=cwd,
        env=evoexp_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_foreground_signals,
    )
    _STARTED.append(proc)
    return proc


def runs_of(uri: str, experiment: str) -> list[Any]:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)


def running(db: Path, kind: str = "job") -> int:
    """RUNNING runs of ``kind`` in a SQLite store (0 while the store does not exist yet)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            query = (
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                "where r.status = 'RUNNING' and t.key = 'evoexp.kind' and t.value = ?"
            )
            return int(conn.execute(query, (kind,)).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_until(condition: Any, proc: subprocess.Popen[str], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A real, small file system at ``path`` (skips the test where mounting is not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root with CAP_SYS_ADMIN: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` until ENOSPC; return the filler file."""
    filler = directory / "filler"
    with filler.open("wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 65536)
            file.flush()
    return filler


# --- cheap (default tier) ----------------------------------------------------------------------------------------


def test_records_are_whole_or_absent_on_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="1m") as small:
        fill(small)
        with pytest.raises(OSError, match="No space left on device") as info:
            write_outcome(small / "job", JobOutcome("finished", job=0, error="x" * 100_000))
        assert info.value.errno == errno.ENOSPC
        assert sorted(p.name for p in (small / "job").iterdir()) == []  # neither a 0-byte record nor a temp file


def test_an_unreadable_record_is_a_failed_job_with_the_reason(tmp_path: Path) -> None:
    """A record truncated by an older writer (or by hand) fails its job in the summary; it does not crash it."""
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / OUTCOME_FILE).write_text("")
    (record,) = read_outcomes(tmp_path / "sweep")
    assert record.outcome == "failed" and record.error is not None
    assert record.error.startswith(f"unreadable {OUTCOME_FILE}: JSONDecodeError")


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/b", "..", "a\\b"])
def test_experiment_names_are_names_never_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"tracking\.experiment must be a name, not a path"):
        TrackingConfig(experiment=name)
    with pytest.raises(ValueError, match=r"tracking\.experiment must be a name"):
        MlflowTracker(f"sqlite:///{tmp_path / 's.db'}", name, root=tmp_path)
    assert not list(tmp_path.iterdir())
    TrackingConfig(experiment="surrogate_sweep-2 (v2)")


def test_presentation_keys_neither_change_the_config_hash_nor_split_rows(
    compose_config: Callable[..., DictConfig],
) -> None:
    base = compose_config("experiment=smoke")
    presentation = ["figures=true", "threads=2", "tracking.experiment=other", "tracking.timeout=3"]
    shown = compose_config("experiment=smoke", *presentation)
    other = compose_config("experiment=smoke", "seed=1")
    assert config_hash(base) == config_hash(shown) != config_hash(other)
    columns = ["params.figures", "params.threads", "params.tracking.timeout", "params.model.dt", "params.seed"]
    import pandas as pd

    assert group_columns(pd.DataFrame(columns=columns)) == ["params.model.dt"]


def _log_job(client: MlflowClient, exp_id: str, *, seed: int, code: str, start: int, acc: float) -> str:
    run = client.create_run(exp_id, start_time=start, run_name=f"s{seed}")
    tags = {Tags.KIND: "job", Tags.CONFIG_HASH: f"hash-{seed}", Tags.CODE_IDENTITY: code}
    client.log_batch(
        run.info.run_id,
        params=[Param("surrogate.name", "atan"), Param("surrogate.slope", "10"), Param("seed", str(seed))],
        metrics=[Metric("snn/test/acc_best", acc, start, 0), Metric("ann/test/acc_best", 0.9, start, 0)],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 1000)
    return str(run.info.run_id)


def test_analysis_counts_one_run_per_config_of_one_code(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("dedup")
    old = [_log_job(client, exp_id, seed=s, code="code A", start=1000 + s, acc=0.5) for s in (0, 1)]
    new = [_log_job(client, exp_id, seed=s, code="code B", start=2000 + s, acc=0.7) for s in (0, 1)]
    again = _log_job(client, exp_id, seed=0, code="code B", start=3000, acc=0.8)  # the same config run twice

    result = run_analysis("dedup", out_dir=tmp_path / "a", client=client, formats=["csv"], log_summary=False)
    assert sorted(result.runs["run_id"]) == sorted([again, new[1]])  # n = 2 for 2 seeds, not 5
    assert len(result.dropped) == 2
    assert result.dropped[0].startswith("dropped 2 run(s) of other code than 'code B'")
    assert result.dropped[1].startswith("dropped 1 older duplicate run(s) of 1 config(s)")
    assert new[0] in result.dropped[1]
    stats = result.tables["snn_vs_ann"].stats
    assert {int(stats[column].iloc[0]) for column in stats.columns if column[1] == "n"} == {2}

    chosen = run_analysis(
        "dedup", out_dir=tmp_path / "b", client=client, formats=["csv"], log_summary=False, code="code A"
    )
    assert sorted(chosen.runs["run_id"]) == sorted(old)
    with pytest.raises(ValueError, match="no finished run of 'code C'"):
        run_analysis("dedup", out_dir=tmp_path / "c", client=client, formats=["csv"], log_summary=False, code="code C")
    assert len(load_runs("dedup", client=client)) == 5  # the store keeps everything; only the analysis selects


class _FlakyStore:
    """A client whose ``log_batch`` blocks (a server that hangs) until ``up`` is set, or fails while ``down``."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.down = False
        self.batches: list[int] = []
        self.statuses: list[str] = []

    def log_batch(self, run_id: str, metrics: list[Any] = (), tags: list[Any] = (), **kwargs: Any) -> None:  # type: ignore[assignment]
        if self.down:
            raise ConnectionError("connection refused")
        self.up.wait()
        self.batches.append(len(metrics))

    def set_terminated(self, run_id: str, status: str) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        self.statuses.append(status)


def test_training_never_waits_on_the_store_and_fails_clearly_when_it_stays_away() -> None:
    store = _FlakyStore()
    run = TrackedRun(store, "r1", flush_every=0, background=True, give_up_after=1.0, where="http://store")
    started = time.monotonic()
    for epoch in range(20):  # the store hangs: every flush is queued, none waits
        run.log_metrics({"snn/val/acc": 0.5}, step=epoch)
    assert time.monotonic() - started < 1.0
    store.up.set()
    run.end("FINISHED")
    assert sum(store.batches) == 20  # everything arrived, in order, once

    store = _FlakyStore()
    store.up.set()
    store.down = True
    run = TrackedRun(store, "r2", flush_every=0, background=True, give_up_after=1.0, where="http://store")
    run.log_metrics({"snn/val/acc": 0.5}, step=1)
    time.sleep(2.0)
    with pytest.raises(TrackingUnavailable, match=r"http://store did not accept the run's data for \d+ s"):
        run.log_metrics({"snn/val/acc": 0.6}, step=2)
    with pytest.raises(TrackingUnavailable):
        run.end("FINISHED")  # its data is not all in the store: never marked FINISHED
    assert run.status is None
    store.down = False
    run.end("FAILED", tags={Tags.ERROR: "tracking store gone"})  # sent directly, without the uploader
    assert (run.status, store.statuses) == ("FAILED", ["FAILED"])


HOLD_SCRIPT = """
import sys, time
from pathlib import Path
from evoexp.job.tracking import MlflowTracker
from evoexp.keys import Tags
tracker = MlflowTracker(sys.argv[1], "claims", root=Path(sys.argv[2]))
claim = {Tags.CONFIG_HASH: "h1", Tags.CODE_IDENTITY: "c"}
with tracker.start_run(run_name="first", tags=claim, params={}, claim=claim) as run:
    print(run.run_id, flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_a_config_claimed_by_a_live_invocation_is_waited_for_not_trained_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, uri, str(tmp_path), "4"],
        stdout=subprocess.PIPE,
        text=True,
        env=evoexp_env(),
    )
    assert holder.stdout is not None
    first = holder.stdout.readline().strip()
    tracker = MlflowTracker(uri, "claims", root=tmp_path)
    claim = {Tags.CONFIG_HASH: "h1", Tags.CODE_IDENTITY: "c"}
    assert tracker.taken(claim) == first
    assert tracker.taken({**claim, Tags.CODE_IDENTITY: "other code"}) is None
    with pytest.raises(ConfigTaken) as info, tracker.start_run(run_name="second", tags=claim, params={}, claim=claim):
        pass  # started after the holder's run: it yields
    assert info.value.run_id == first
    tracker.wait_for(first)
    assert holder.wait(timeout=60) == 0
    runs = runs_of(uri, "claims")
    assert [(r.info.run_id, r.info.status) for r in runs] == [(first, "FINISHED")]  # the yielded run is deleted
    assert tracker.taken(claim) is None


def test_a_sweep_dir_in_use_by_a_running_sweep_is_refused(tmp_path: Path) -> None:
    code = (
        "from evoexp.job.preflight import claim_sweep_dir; import time; "
        f"lock = claim_sweep_dir({str(tmp_path)!r}); print('held', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=evoexp_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(PreflightError, match="is in use by another running sweep"):
            claim_sweep_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    claim_sweep_dir(tmp_path).release()  # the holder's death released it: a later sweep may reuse the directory


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("surrogate=fast_sigmoid,nosuch",), "Could not find 'surrogate/nosuch'"),
        (("experiment=smoke,robustness", "dataset=digits"), "experiment=smoke sets dataset.n_classes"),
        (("surrogate.slope=-1,5",), "surrogate.slope must be a finite number > 0"),
        (("seed=0,1", "hydra.sweep.dir=taken"), "hydra.sweep.dir taken is a file"),
    ],
    ids=["unknown-option", "preset-clash", "bad-value", "sweep-dir-is-a-file"],
)
def test_a_sweep_with_a_bad_swept_value_opens_nothing(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "taken").write_text("a file\n")
    done = evoexp(tmp_path, "-m", "experiment=smoke", *args)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("evoexp: error: ") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no store, no parent run, no sweep directory


@pytest.mark.slow
def test_a_clash_of_two_swept_values_closes_the_sweep_and_removes_its_directory(tmp_path: Path) -> None:
    """Each value is fine alone; only x1 with digits clashes, in a job the value check does not compose."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "x0.yaml").write_text("# @package _global_\nseed: 5\n")
    (tmp_path / "conf" / "experiment" / "x1.yaml").write_text("# @package _global_\ndataset:\n  n_classes: 3\n")
    done = evoexp(tmp_path, "--config-dir", "conf", "-m", "experiment=x0,x1", "dataset=randman,digits")
    assert done.returncode == 1
    assert "aborted (ConfigCompositionException" in done.stderr and "after 0 started job(s)" in done.stderr
    assert not (tmp_path / "outputs").exists()
    (parent,) = runs_of(f"sqlite:///{tmp_path / 'mlruns.db'}", "evoexp")
    assert parent.info.status == "FAILED" and parent.data.tags[Tags.ERROR].startswith("sweep aborted: ")


@pytest.mark.parametrize("mode", [(), ("-m", "seed=0,1")], ids=["run", "sweep"])
def test_a_dead_tracking_server_is_one_line_in_seconds(
    tmp_path: Path, mode: tuple[str, ...], free_port: Callable[[], int]
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = evoexp(tmp_path, *mode, "experiment=smoke", "tracking=server", MLFLOW_TRACKING_URI=uri, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"evoexp: error: tracking.uri {uri}: no MLflow server answers within 10 s")
    assert elapsed < 60  # the interpreter's start-up included; MLflow's defaults took 498 s
    assert not (tmp_path / "outputs").exists()


def test_a_job_uploads_only_the_files_it_wrote(tmp_path: Path, compose_config: Callable[..., DictConfig]) -> None:
    """``hydra.run.dir=.``: the output directory is the launch directory, with the store and a secret in it."""
    (tmp_path / "secret.env").write_text("TOKEN=hunter2\n")
    cfg = compose_config("experiment=smoke", f"tracking.uri=sqlite:///{tmp_path}/m.db")
    try:
        execute(cfg, load_config(cfg), JobContext(output_dir=tmp_path, root=tmp_path))
    finally:
        torch.set_num_threads(1)
    (run,) = [r for r in runs_of(f"sqlite:///{tmp_path}/m.db", "evoexp") if r.data.tags[Tags.KIND] == "job"]
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{tmp_path}/m.db").list_artifacts(run.info.run_id)}
    assert artifacts == {"config_resolved.yaml", "results.json", "report.md"}
    assert (tmp_path / "secret.env").exists() and json.loads((tmp_path / OUTCOME_FILE).read_text())["run_id"]


# --- slow: whole sweeps under real faults ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "signum"),
    [("basic", signal.SIGINT), ("parallel", signal.SIGINT), ("basic", signal.SIGTERM)],
    ids=["ctrl-c-basic", "ctrl-c-parallel", "sigterm-basic"],
)
def test_ctrl_c_ends_every_run_killed_and_records_every_started_job(
    tmp_path: Path, launcher: str, signum: signal.Signals
) -> None:
    args = ["-m", "experiment=smoke", "seed=0,1,2", "debug.sleep=120", f"hydra/launcher={launcher}"]
    sweep = start_evoexp(tmp_path, *args, EVOEXP_WORKERS="2")
    in_flight = 2 if launcher == "parallel" else 1
    wait_until(lambda: running(tmp_path / "mlruns.db") == in_flight, sweep, f"{in_flight} job(s) run")
    os.killpg(sweep.pid, signum)  # Ctrl-C in a terminal, or a scheduler's SIGTERM: the launcher and its workers
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + signum, err[-3000:]
    reason = f"interrupted by {signum.name}"
    assert err.strip().splitlines()[-1].startswith("evoexp: error: sweep smoke-")
    assert f"{reason} after {in_flight} started job(s); its open runs were closed" in err
    assert f"sweep summary ({jobs_text(in_flight)}): finished 0, diverged 0, failed 0, killed {in_flight}" in out

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = runs_of(uri, "evoexp") + runs_of(uri, "evoexp-ann-baselines")
    assert len([r for r in runs if r.data.tags.get(Tags.KIND) == "job"]) == in_flight
    assert {r.info.status for r in runs} == {"KILLED"}  # the sweep's run and every job run, none left RUNNING
    assert {r.data.tags[Tags.ERROR] for r in runs} == {reason}
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    records = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}"))]
    assert [(r["job"], r["outcome"], r["error"]) for r in records] == [
        (job, "killed", reason) for job in range(in_flight)
    ]
    assert not (sweep_dir / str(in_flight)).exists()  # the job that never started has no directory


class _Lines:
    """Collects the lines of a running command's output stream in a thread (the test reacts to one while it runs)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        self._thread.join(timeout=60)
        return "\n".join(self.lines)


@pytest.mark.slow
def test_a_job_that_finds_the_disk_full_fails_alone_and_the_sweep_summarises(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="8m") as disk:
        args = ["-m", "experiment=smoke", "seed=0,1", "debug.sleep=4", f"hydra.sweep.dir={disk}/sweep"]
        sweep = start_evoexp(tmp_path, *args)
        out, errors = _Lines(sweep.stdout), _Lines(sweep.stderr)
        wait_until(lambda: running(tmp_path / "mlruns.db") == 1, sweep, "the first job runs")
        filler = fill(disk)  # the first job's outputs, log and record meet a full disk
        wait_until(lambda: any(JOB_LINE.match(line) for line in out.lines), sweep, "the first job ends")
        filler.unlink()  # the second job finds room again
        sweep.wait(timeout=300)
        text, err = out.text(), errors.text()
        assert sweep.returncode == 1, err[-3000:]
        lines = [line for line in text.splitlines() if JOB_LINE.match(line)]
        assert len(lines) == 2 and "FAILED OSError: [Errno 28] No space left on device" in lines[0]
        assert "FAILED" not in lines[1]
        assert "Traceback" not in err and "Logging error" not in err
        assert "sweep summary (2 jobs): finished 1, diverged 0, failed 1" in text
        assert err.strip().splitlines()[-1].startswith("evoexp: error: 1 of 2 jobs failed")
        records = list((disk / "sweep").rglob("*.json"))
        assert records and all(path.stat().st_size > 0 for path in records)  # whole or absent, never truncated
        assert not list((disk / "sweep").rglob("*.tmp"))
        summary = json.loads((disk / "sweep" / "sweep_summary.json").read_text())
        assert [job["outcome"] for job in summary["jobs"]] == ["failed", "finished"]
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = [r for r in runs_of(uri, "evoexp") if r.data.tags[Tags.KIND] in ("job", "sweep")]  # not the ANN baseline
    assert sorted((r.data.tags[Tags.KIND], r.info.status) for r in runs) == [
        ("job", "FAILED"),
        ("job", "FINISHED"),
        ("sweep", "FAILED"),
    ]
    (failed,) = [r for r in runs if r.info.status == "FAILED" and r.data.tags[Tags.KIND] == "job"]
    assert "No space left on device" in failed.data.tags[Tags.ERROR]


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, list[str]]]:
    """A world-writable folder and the command prefix that runs a command as an unprivileged user there.

    File permissions bind only an unprivileged user (root writes to a read-only folder), so as root the command
    runs as ``nobody`` (``setpriv``); a test that runs unprivileged already runs the command as itself.
    """
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be made to bind a command")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    folder = Path(tempfile.mkdtemp(prefix="evoexp-faults-"))
    folder.chmod(0o777)
    try:
        yield folder, prefix
    finally:
        for path in [folder, *folder.rglob("*")]:
            with contextlib.suppress(OSError):
                path.chmod(0o777 if path.is_dir() else 0o666)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_store_that_turns_read_only_fails_the_jobs_and_the_sweep_still_summarises(
    unprivileged: tuple[Path, list[str]],
) -> None:
    root, prefix = unprivileged
    store = root / "store"
    store.mkdir(mode=0o777)
    store.chmod(0o777)
    uri = f"sqlite:///{store}/mlruns.db"
    args = ["-m", "experiment=smoke", "seed=0,1", "debug.sleep=4", f"tracking.uri={uri}", "tracking.give_up_after=2"]
    sweep = subprocess.Popen(
        [*prefix, sys.executable, "-m", "evoexp", *args],
        cwd=root,
        env=evoexp_env(HOME=str(root)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(sweep)
    wait_until(lambda: running(store / "mlruns.db") == 1, sweep, "the first job runs")
    (store / "mlruns.db").chmod(0o444)  # the store turns read-only under the running sweep
    store.chmod(0o555)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, err[-3000:]
    assert "sweep summary (2 jobs): finished 0, diverged 0, failed 2" in out
    (line,) = [line for line in err.splitlines() if line.startswith("evoexp: error:")]
    assert line.startswith("evoexp: error: 2 of 2 jobs failed")
    assert "could not close the sweep's MLflow run" in line  # SQLite says "readonly database" or "disk I/O error"
    (sweep_dir,) = (root / "outputs" / "multirun").glob("*/*")
    records = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}"))]
    assert [r["outcome"] for r in records] == ["failed", "failed"]
    assert "sqlite3.OperationalError" in records[0]["error"]  # the store's own reason
    assert "the store cannot be written" in records[1]["error"]  # evoexp's check before the second job opens its run

    store.chmod(0o777)
    (store / "mlruns.db").chmod(0o666)
    assert [r.info.status for r in runs_of(uri, "evoexp")].count("RUNNING") == 2  # the sweep's run and job 0's
    MlflowTracker(uri, "evoexp", root=root).reap_ghosts()  # what the next sweep does first
    statuses = {r.data.tags[Tags.KIND]: r.info.status for r in runs_of(uri, "evoexp")}
    assert (statuses["job"], statuses["sweep"]) == ("KILLED", "KILLED")  # an ANN baseline trained before stays


@pytest.mark.slow
def test_a_server_that_dies_mid_sweep_fails_the_jobs_in_bounded_time(
    tmp_path: Path, free_port: Callable[[], int], mlflow_server: Callable[..., Any]
) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    settings = ["tracking=server", "tracking.timeout=2", "tracking.retries=1", "tracking.give_up_after=5"]
    with mlflow_server(tmp_path / "server", port) as server:
        sweep = start_evoexp(
            tmp_path, "-m", "experiment=smoke", "seed=0,1,2", "debug.sleep=3", *settings, MLFLOW_TRACKING_URI=uri
        )
        wait_until(lambda: running(tmp_path / "server" / "server.db") == 1, sweep, "the first job runs")
        os.killpg(server.pid, signal.SIGTERM)  # the server goes away with a job in flight
        server.wait(timeout=60)
        died = time.monotonic()
        out, err = sweep.communicate(timeout=300)
        elapsed = time.monotonic() - died
    assert sweep.returncode == 1, err[-3000:]
    assert elapsed < 90  # MLflow's own defaults showed no progress for 500 s
    lines = [line for line in out.splitlines() if JOB_LINE.match(line)]
    assert len(lines) == 3 and all("FAILED" in line for line in lines)
    assert "sweep summary (3 jobs): finished 0, diverged 0, failed 3" in out
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob(f"outputs/multirun/*/*/*/{OUTCOME_FILE}"))]
    assert [r["outcome"] for r in records] == ["failed"] * 3
    assert all("no MLflow server answers within 2 s" in r["error"] for r in records[1:])  # asked once, in seconds
    (line,) = [line for line in err.splitlines() if line.startswith("evoexp: error:")]
    assert line.startswith("evoexp: error: 3 of 3 jobs failed") and "could not close the sweep's MLflow run" in line

    with mlflow_server(tmp_path / "server", port):  # back: the next sweep's first step closes what it left open
        assert [r.info.status for r in runs_of(uri, "evoexp")].count("RUNNING") == 2
        assert len(MlflowTracker(uri, "evoexp", root=tmp_path).reap_ghosts()) == 2
        assert "RUNNING" not in {r.info.status for r in runs_of(uri, "evoexp")}


@pytest.mark.slow
def test_the_same_sweep_twice_at_once_shares_no_directory_and_trains_each_config_once(tmp_path: Path) -> None:
    args = ("-m", "experiment=smoke", "seed=0,1", "tracking.experiment=twice")
    first, second = start_evoexp(tmp_path, *args), start_evoexp(tmp_path, *args)  # in the same second
    outputs = [proc.communicate(timeout=600) for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [err[-2000:] for _, err in outputs]
    for out, _ in outputs:
        counts = [m.group(0) for m in map(JOB_LINE.match, out.splitlines()) if m]
        assert sorted(counts) == ["[1/2] ", "[2/2] "]  # each counts its own jobs: no [3/2]
    sweep_dirs = sorted((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweep_dirs) == 2
    plans = [json.loads((d / ".evoexp" / "sweep.json").read_text()) for d in sweep_dirs]
    assert plans[0]["invocation"] != plans[1]["invocation"]
    assert plans[0]["parent_run_id"] != plans[1]["parent_run_id"]  # each invocation has its own parent run
    for sweep_dir, plan in zip(sweep_dirs, plans):
        records = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}"))]
        assert len(records) == 2 and {r["invocation"] for r in records} == {plan["invocation"]}

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = runs_of(uri, "twice")
    jobs = [r for r in runs if r.data.tags[Tags.KIND] == "job"]
    assert sorted(r.data.params["seed"] for r in jobs) == ["0", "1"]  # one FINISHED run per config, not two
    assert {r.info.status for r in runs} == {"FINISHED"}
    skipped = sum(
        json.loads(p.read_text())["outcome"] == "skipped" for p in tmp_path.glob(f"outputs/*/*/*/*/{OUTCOME_FILE}")
    )
    assert skipped == 2  # what one invocation trained, the other waited for and reused
    analysis = run_analysis("twice", out_dir=tmp_path / "analysis", tracking_uri=uri, formats=["md"])
    assert sorted(analysis.runs["run_id"]) == sorted(r.info.run_id for r in jobs) and analysis.dropped == []
