"""Config schemas, ConfigStore registration, composition of every group option, validation, identities."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError
from torch import nn

from evoexp.data import DatasetSplits, get_dataset
from evoexp.job.build import (
    build_ann,
    build_dataset,
    build_loader,
    build_model,
    build_optimizer,
    training_options,
    verification_options,
    warmup_epochs,
)
from evoexp.job.config import (
    Config,
    ConfigValidationError,
    ann_hash,
    config_hash,
    flatten,
    load_config,
    one_line,
    report_config_errors,
    settings,
)
from evoexp.job.config.identity import ANN_KEYS, SNN_ONLY_KEYS
from evoexp.job.config.settings import SETTINGS, settings_arguments, settings_keys, settings_schema
from evoexp.job.prepare import prepare
from evoexp.job.sweep import make_tracker
from evoexp.job.tracking import MlflowTracker, NullTracker
from evoexp.surrogate import SurrogateGradient, available_surrogates, get_surrogate
from evoexp.training import make_optimizer, train_model
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.stability import NumericalStabilityTester

CONF = Path(__file__).resolve().parents[1] / "evoexp" / "conf"
GROUPS = ("surrogate", "model", "ann", "dataset", "trainer", "verifier", "tracking")
# A small dataset for instantiating models/optimizers of every option quickly.
SMALL = ["dataset=synthetic", "dataset.samples_per_class=8", "dataset.time_steps=5"]
# Options that read the user's files: composed and built on generated files in tests/test_shd.py (datasets) and
# tests/test_nir_job.py (model=nir).
FILE_DATASETS = ("shd", "ssc")
FILE_MODELS = ("nir",)
# Options that name the user's callable (``_target_: ???``) and the example networks of the field's libraries (they
# need their own data layout): tested in tests/test_your_network.py and tests/test_examples.py.
USER_OPTIONS = ("custom",)
EXAMPLE_MODELS = ("norse_lif", "snntorch_conv", "spikingjelly_mlp")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def small_data() -> DatasetSplits:
    return get_dataset("synthetic", n_classes=2, n_channels=6, samples_per_class=8, time_steps=5, seed=0)


def test_one_surrogate_option_per_registered_shape() -> None:
    assert options("surrogate") == available_surrogates()


@pytest.mark.parametrize("name", available_surrogates())
def test_surrogate_option_composes_and_builds_its_shape(compose_config: Callable[..., DictConfig], name: str) -> None:
    config = load_config(compose_config(f"surrogate={name}"))
    shape = get_surrogate(config.surrogate.name, **config.surrogate.kwargs())
    assert isinstance(shape, SurrogateGradient)
    assert shape.name == name
    assert shape.slope == config.surrogate.slope


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "surrogate"])
def test_every_group_option_composes_and_instantiates(
    compose_config: Callable[..., DictConfig], group: str, small_data: DatasetSplits,
) -> None:
    for option in options(group):
        if option in FILE_DATASETS + USER_OPTIONS + EXAMPLE_MODELS + FILE_MODELS:
            continue
        overrides = [f"{group}={option}"] + ([] if group == "dataset" else SMALL)
        config = load_config(compose_config(*overrides))
        assert isinstance(config, Config)
        snn, ann = build_model(config, small_data).model, build_ann(config, small_data)
        assert snn(small_data.train.spikes[:2]).shape == (2, small_data.n_classes)
        if group == "ann" and option == "none":
            assert ann is None and not config.ann.configured
            continue
        assert ann is not None and ann(small_data.train.features[:2]).shape == (2, small_data.n_classes)
        assert isinstance(build_optimizer(config, list(snn.parameters())), torch.optim.Optimizer)
        options_ = verification_options(config)
        assert {c for c in config.verifier.checks if options_.enabled(c)} <= set(config.verifier.checks)
        tracker = make_tracker(config.tracking, root=Path("."))
        assert isinstance(tracker, MlflowTracker if config.tracking.enabled else NullTracker)


@pytest.mark.parametrize("option", [o for o in options("dataset") if o not in FILE_DATASETS + USER_OPTIONS])
def test_dataset_option_builds_small_version(compose_config: Callable[..., DictConfig], option: str) -> None:
    small = {"randman": ["dataset.samples_per_class=6", "dataset.time_steps=10"], "digits": [], "synthetic": []}
    config = load_config(compose_config(f"dataset={option}", *small[option]))
    assert config.dataset.path == f"evoexp.data.make_{option}"
    data = build_dataset(config)
    assert data.name == option
    assert data.time_steps == config.dataset.args["time_steps"]
    assert data.train.spikes.equal(get_dataset(option, **config.dataset.args).train.spikes)  # the same call


@pytest.mark.parametrize("option", options("experiment"))
def test_every_experiment_preset_composes(compose_config: Callable[..., DictConfig], option: str) -> None:
    config = load_config(compose_config(f"experiment={option}"))
    assert isinstance(config, Config)


def test_robustness_preset_is_the_zenke_vogels_setting(compose_config: Callable[..., DictConfig]) -> None:
    config = load_config(compose_config("experiment=robustness"))
    d, m, t = config.dataset.args, config.model.args, config.trainer
    assert config.dataset.path == "evoexp.data.make_randman"
    assert (d["n_classes"], d["n_channels"], d["manifold_dim"], d["alpha"]) == (10, 20, 1, 1.0)
    assert (d["samples_per_class"], d["time_steps"], d["spikes_per_unit"]) == (1000, 100, 1)
    assert d["split"] == [0.8, 0.1, 0.1]
    assert d["step_frac"] == 0.5
    assert (m["hidden_sizes"], m["tau_mem"], m["tau_syn"], m["dt"], m["recurrent"]) == ([128], 20.0, 10.0, 2.0, False)
    assert (m["reset"], m["detach_reset"], m["bias"], m["weight_scale"], m["readout"]) == ("zero", True, False, 0.666,
                                                                                              "max")
    assert (config.surrogate.name, config.surrogate.slope) == ("fast_sigmoid", 20.0)
    assert (t.optimizer, t.lr, t.batch_size, t.epochs) == ("adam", 5e-3, 250, 200)


@pytest.mark.parametrize(
    ("preset", "swept", "detach_reset"),
    [("robustness_slopes", "surrogate.slope", True), ("robustness_scales", "surrogate.scale", False)],
)
def test_robustness_sweep_presets(
    compose_config: Callable[..., DictConfig], preset: str, swept: str, detach_reset: bool,
) -> None:
    cfg = compose_config(f"experiment={preset}", hydra=True)
    params = cfg.hydra.sweeper.params
    values = [float(v) for v in str(params[swept]).split(",")]
    assert len(values) == 4 and len(str(params.seed).split(",")) == 2
    assert len(params.surrogate.split(",")) >= (4 if swept == "surrogate.slope" else 1)
    config = load_config(compose_config(f"experiment={preset}"))
    assert config.dataset.args["step_frac"] == 0.5 and config.model.args["detach_reset"] is detach_reset
    assert config.tracking.experiment == preset and config.trainer.epochs >= 100


def test_surrogate_sweep_preset_grid(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config("experiment=surrogate_sweep", hydra=True)
    params = cfg.hydra.sweeper.params
    assert len(params.surrogate.split(",")) >= 5
    assert len(str(params["surrogate.slope"]).split(",")) == 7
    assert str(params.seed).split(",") == ["0", "1", "2"]


@pytest.mark.parametrize("launcher", ["parallel", "slurm", "local_cluster"])
def test_launcher_presets_compose(compose_config: Callable[..., DictConfig], launcher: str) -> None:
    cfg = compose_config(f"hydra/launcher={launcher}", hydra=True)
    assert "Launcher" in cfg.hydra.launcher._target_


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("surrogate.slope=-1", "surrogate.slope"),
        ("surrogate.scale=0", "surrogate.scale"),
        ("trainer.lr=0", "trainer.lr"),
        ("verifier.checks=[nope]", "verifier.checks"),
        ("trainer.momentum=5", "trainer.momentum=5.0 is an SGD setting that adam ignores"),
        ("surrogate.slope=1e300", "surrogate.slope must be at most 1e+06"),
        ("surrogate.scale=1e7", "surrogate.scale must be at most 1e+06"),
        ("tracking.uri=bogus://x", "tracking.uri='bogus://x' has an unknown scheme 'bogus'"),
        ("tracking.uri=sqlite:////nonexistent/evoexp-dir/x.db", "the directory /nonexistent/evoexp-dir of the SQLite"),
        ("+model.nope=1", "model.nope is not an argument of evoexp.models.lif_snn"),
        ("model._target_=torch.nn.Nope", "model._target_=torch.nn.Nope: torch.nn has no attribute 'Nope'"),
        ("model._target_=nope_pkg.Net", "model._target_=nope_pkg.Net: cannot import 'nope_pkg'"),
        ("ann._target_=torch.nn.Linear", "ann.hidden_sizes is not an argument of torch.nn.Linear"),
        ("model.reset=bogus", "model.reset='bogus' does not fit Literal['subtract', 'zero']"),
        ("+model.n_inputs=3", "model.n_inputs is passed by evoexp from the data"),
        ("surrogate=q_pseudo", None),
        ("tracking.uri=http://127.0.0.1:5000", None),
    ],
)
def test_value_errors_name_the_key(compose_config: Callable[..., DictConfig], override: str, key: str | None) -> None:
    cfg = compose_config(override)
    if key is None:  # a valid option, for contrast
        load_config(cfg)
        return
    with pytest.raises(ConfigValidationError, match=re.escape(key)):
        load_config(cfg)
    assert not Path("/nonexistent").exists()  # the SQLite check creates nothing


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.time_steps=0", "dataset.time_steps"),
        ("dataset.split=[0.5,0.1,0.1]", "dataset.split must sum to 1"),
        ("dataset.split=[0.9,0.1,0.0]", "dataset.split leaves the test split empty"),
        ("dataset.split=[0.9,0.0,0.1]", "dataset.split leaves the validation split empty"),
        ("dataset.samples_per_class=1", "dataset.samples_per_class=1 leaves the validation and test splits empty"),
        ("model.readout_beta=1.5", "model.readout_beta"),
        ("model.weight_scale=0", "model.weight_scale"),
        ("model.hidden_sizes=[]", "model.hidden_sizes"),
        ("model.tau_syn=-1", "model.tau_syn must be a finite number > 0"),
        ("ann.activation=bogus", "ann.activation"),
        ("dataset.samples_per_class=6", None),
    ],
)
def test_values_are_checked_by_the_callables_check_when_the_config_loads(
    compose_config: Callable[..., DictConfig], override: str, key: str | None
) -> None:
    """The callables' own argument checks (``checked_by``) run when the config loads: one line naming the key."""
    cfg = compose_config("experiment=smoke", override)
    if key is None:
        assert prepare(load_config(cfg)).data.n_classes == 2
        return
    with pytest.raises(ConfigValidationError, match=re.escape(key)) as info:
        load_config(cfg)
    assert "\n" not in str(info.value)


def test_momentum_is_checked_for_sgd_too(compose_config: Callable[..., DictConfig]) -> None:
    assert load_config(compose_config("trainer=sgd")).trainer.momentum == 0.9
    with pytest.raises(ConfigValidationError, match=r"trainer\.momentum must be < 1"):
        load_config(compose_config("trainer=sgd", "trainer.momentum=5"))


def test_dt_far_above_the_time_constants_warns_once(
    compose_config: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture, small_data: DatasetSplits
) -> None:
    config = load_config(compose_config("model.dt=100"))  # legal: it runs, with one warning when the network is built
    with caplog.at_level(logging.WARNING, logger="evoexp.job.config"):
        build_model(config, small_data)
        build_model(config, small_data)
    (record,) = [r for r in caplog.records if r.name == "evoexp.job.config"]
    message = record.getMessage()
    assert message.startswith("model.dt=100 is larger than model.tau_mem=20 and model.tau_syn=10")
    assert "\n" not in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evoexp.job.config"):
        build_model(load_config(compose_config("model.dt=1")), small_data)
    assert not caplog.records


@pytest.fixture
def config_error(compose_config: Callable[..., DictConfig]) -> Callable[[], None]:
    def compose_a_bad_value() -> None:
        compose_config("trainer.lr=abc")

    return compose_a_bad_value


def test_report_config_errors_prints_one_line_and_restores_the_environment(
    config_error: Callable[[], None], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    seen: list[str | None] = []

    def main() -> int:
        seen.append(os.environ.get("HYDRA_FULL_ERROR"))  # Hydra raises instead of printing while it is set
        config_error()
        return 0

    with pytest.raises(SystemExit) as info:
        report_config_errors(main, argv=["trainer.lr=abc"])
    assert info.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("evoexp: error: ") and "(key: trainer.lr)" in line
    assert seen == ["1"] and "HYDRA_FULL_ERROR" not in os.environ
    assert report_config_errors(lambda: 7) == 7

    def crash() -> None:
        raise RuntimeError("not a config error")

    with pytest.raises(RuntimeError, match="not a config error"):  # other errors keep their traceback
        report_config_errors(crash)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the user asks for the full trace of everything
    with pytest.raises(Exception, match=r"trainer\.lr"):
        report_config_errors(config_error)
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


def test_preset_clash_names_both_sides(
    compose_config: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        report_config_errors(
            lambda: compose_config("experiment=smoke", "dataset=digits"), argv=["experiment=smoke", "dataset=digits"]
        )
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "evoexp: error: experiment=smoke sets dataset.n_classes, which dataset=digits does not have: the preset is "
        "made for another dataset option; drop dataset=digits or the preset"
    )


def test_shape_specific_params_are_validated(compose_config: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigValidationError, match=r"surrogate\.params"):
        load_config(compose_config("surrogate=q_pseudo", "surrogate.params.tail=0.5"))
    with pytest.raises(ConfigValidationError, match=r"surrogate\.params"):
        load_config(compose_config("surrogate=atan", "+surrogate.params.tail=2"))


def test_type_errors_and_unknown_keys_fail_at_composition(compose_config: Callable[..., DictConfig]) -> None:
    with pytest.raises(Exception, match=r"trainer\.lr") as info:
        compose_config("trainer.lr=abc")
    assert isinstance(info.value.__cause__, ValidationError)
    assert "trainer.lr" in one_line(info.value)
    assert "\n" not in one_line(info.value)
    with pytest.raises(Exception, match=r"trainer\.nope") as info:
        compose_config("trainer.nope=1")
    assert isinstance(info.value.__cause__, ConfigAttributeError)
    assert "\n" not in one_line(info.value)
    with pytest.raises(Exception, match="nope"):
        load_config(compose_config("+trainer.nope=1"))
    with pytest.raises(Exception, match="encoding"):
        compose_config("dataset=randman", "dataset.encoding=rate")  # a digits-only key


def test_unknown_option_lists_the_options_on_one_line(compose_config: Callable[..., DictConfig]) -> None:
    with pytest.raises(Exception, match="surrogate/nope") as info:
        compose_config("surrogate=nope")
    line = one_line(info.value)
    assert "\n" not in line
    assert "Available options in 'surrogate': " in line
    for name in available_surrogates():
        assert name in line


def test_config_hash_ignores_tracking_and_threads_only(compose_config: Callable[..., DictConfig]) -> None:
    base = config_hash(compose_config())
    assert config_hash(compose_config("tracking=off", "tracking.experiment=other", "threads=4")) == base
    assert config_hash(compose_config("surrogate.slope=3")) != base
    assert config_hash(compose_config("seed=1")) != base


def test_ann_hash_depends_on_data_sizes_trainer_early_stopping_seed_not_surrogate(
    compose_config: Callable[..., DictConfig],
) -> None:
    base = ann_hash(compose_config())
    same = ("surrogate=atan", "surrogate.slope=3", "trainer.rate_reg=0.1", "model.tau_mem=5", "threads=2")
    assert ann_hash(compose_config(*same)) == base
    for override in (
        "seed=1",
        "model.hidden_sizes=[32]",
        "ann.activation=tanh",
        "ann=none",
        "trainer.lr=0.1",
        "trainer.grad_clip=1.0",
        "dataset.time_steps=20",
        "verifier.convergence.patience=3",
        "verifier.convergence.min_delta=0.01",
    ):
        assert ann_hash(compose_config(override)) != base, override


class _Recorder:
    """Proxy of a config dataclass that records every dotted key read through it."""

    def __init__(self, node: object, seen: set[str], prefix: str = "") -> None:
        self._node, self._seen, self._prefix = node, seen, prefix

    def __getattr__(self, name: str) -> object:
        value = getattr(self._node, name)
        key = f"{self._prefix}{name}"
        if dataclasses.is_dataclass(value):
            return _Recorder(value, self._seen, f"{key}.")
        self._seen.add(key)
        return value


def test_ann_key_covers_every_setting_the_ann_route_reads(
    compose_config: Callable[..., DictConfig], small_data: DatasetSplits,
) -> None:
    """Guard of ANN_KEYS: building and training the ANN twin reads no config key outside the ANN identity."""
    config = load_config(compose_config(*SMALL))
    seen: set[str] = set()
    proxy = _Recorder(config, seen)
    ann = build_ann(proxy, small_data)  # type: ignore[arg-type]
    build_optimizer(proxy, ann.parameters())  # type: ignore[arg-type]
    training_options(proxy, snn=False)  # type: ignore[arg-type]
    build_loader(proxy, small_data, "train", view="features")  # type: ignore[arg-type]
    build_dataset(proxy)  # type: ignore[arg-type]
    warmup_epochs(proxy)  # type: ignore[arg-type]
    kept = [k for k in ANN_KEYS if not any(k == s or k.startswith(s + ".") for s in SNN_ONLY_KEYS)]
    uncovered = sorted(k for k in seen if not any(k == p or k.startswith(p + ".") for p in kept))
    assert not uncovered, f"the ANN reads {uncovered}, which ann_hash ignores"
    assert {"trainer.lr", "verifier.convergence.patience", "ann.args", "seed"} <= seen
    seen.clear()
    training_options(proxy, snn=True)  # type: ignore[arg-type]
    assert {"trainer.rate_reg", "trainer.target_rate"} <= seen  # the SNN-only keys really are SNN-only


def test_verifier_settings_are_the_verifiers_keyword_arguments(compose_config: Callable[..., DictConfig]) -> None:
    config = load_config(compose_config("verifier=full", "verifier.gradient.parameters=[readout.bias]"))
    options = verification_options(config)
    assert options.gradient_kwargs["parameters"] == ("readout.bias",) and options.gradient_kwargs["mode"] == "fast"
    assert set(options.gradient_stability_kwargs) == {"n_batches", "max_grad_norm", "min_grad_norm",
                                                      "max_depth_conditioning"}


@pytest.mark.parametrize("node", list(SETTINGS))
def test_settings_schemas_are_the_base_presets_keys_typed_and_defaulted_by_the_signatures(node: str) -> None:
    schema = settings_schema(node, "Schema", __name__)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    assert tuple(fields) == settings_keys(node) and fields
    for name, spec in fields.items():
        owner = next(fn for fn in SETTINGS[node] if name in inspect.signature(fn).parameters)
        default = inspect.signature(owner).parameters[name].default
        if default is inspect.Parameter.empty:
            assert spec.default is MISSING
        elif isinstance(default, tuple):
            assert spec.default_factory() == list(default)  # type: ignore[misc]
        else:
            assert spec.default == default


def test_a_preset_key_that_no_function_takes_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # drop the function that takes the weight-stability keys: the base preset's n_steps is then nobody's argument
    monkeypatch.setitem(SETTINGS, "verifier.stability", (NumericalStabilityTester.check_gradient_stability,))
    settings._claims.cache_clear()
    try:
        match = r"verifier\.stability\.n_steps of verifier/full\.yaml is an argument of none"
        with pytest.raises(TypeError, match=match):
            settings_schema("verifier.stability", "Schema", __name__)
    finally:
        monkeypatch.undo()
        settings._claims.cache_clear()


def test_the_trainers_keys_go_to_the_first_function_that_takes_them(compose_config: Callable[..., DictConfig]) -> None:
    config = load_config(compose_config("trainer=sgd"))
    assert settings_arguments("trainer", config.trainer, make_optimizer) == {
        "optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9,
    }
    # train_model's optimizer is the object, not the name
    assert "optimizer" not in settings_arguments("trainer", config.trainer, train_model)
    assert isinstance(build_optimizer(config, nn.Linear(2, 2).parameters()), torch.optim.SGD)


def test_a_setting_is_checked_by_its_function_when_called_directly_too() -> None:
    """The check that refuses ``verifier.gradient.eps=1e-20`` at load time is the function's own."""
    net, x, y = nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^eps=1e-20 is below what float64 resolves"):
        GradientVerifier().verify_finite_difference(net, x, y, nn.functional.cross_entropy, eps=1e-20)
    with pytest.raises(ValueError, match=r"^momentum=0.9 is an SGD setting that adam ignores"):
        make_optimizer(net.parameters(), momentum=0.9)
    assert isinstance(make_optimizer(net.parameters(), optimizer="sgd", momentum=0.9), torch.optim.SGD)


def test_flatten_uses_dotted_keys_and_keeps_lists(compose_config: Callable[..., DictConfig]) -> None:
    flat = flatten(OmegaConf.to_container(compose_config(), resolve=True))  # type: ignore[arg-type]
    assert flat["surrogate.name"] == "fast_sigmoid"
    assert flat["model.hidden_sizes"] == [128]
    assert flat["seed"] == 0
    assert not any(isinstance(v, dict) and v for v in flat.values())
