"""Typed configuration of evoexp: dataclass schemas, ConfigStore registration, validation and identities.

:func:`load_config` turns the DictConfig that Hydra composed into the typed :class:`Config` (running every schema's
value checks and the argument checks of the functions that take the ``trainer`` and ``verifier.<check>`` keys,
and checking the ``model``, ``dataset`` and ``ann`` calls against their callables' signatures) and raises
:class:`ConfigValidationError` with a one-line message naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from evoexp.job.config.errors import (
    ConfigValidationError,
    describe_config_error,
    is_config_error,
    one_line,
    report_config_errors,
)
from evoexp.job.config.identity import ann_hash, config_hash, flatten, to_plain
from evoexp.job.config.schema import (
    AlignmentCheckConfig,
    Config,
    ConvergenceCheckConfig,
    CrosscheckConfig,
    DebugConfig,
    GradientCheckConfig,
    StabilityCheckConfig,
    SurrogateCheckConfig,
    SurrogateConfig,
    TrackingConfig,
    TrainerConfig,
    VerifierConfig,
    unwritable_location,
)
from evoexp.job.config.settings import check_config_settings
from evoexp.job.config.store import register_configs
from evoexp.job.config.targets import (
    DATASET_KEYS,
    INJECTED,
    MODEL_KEYS,
    ModelTarget,
    Target,
    importable,
    parse_target,
)

__all__ = [
    "DATASET_KEYS",
    "INJECTED",
    "MODEL_KEYS",
    "AlignmentCheckConfig",
    "Config",
    "ConfigValidationError",
    "ConvergenceCheckConfig",
    "CrosscheckConfig",
    "DebugConfig",
    "GradientCheckConfig",
    "ModelTarget",
    "StabilityCheckConfig",
    "SurrogateCheckConfig",
    "SurrogateConfig",
    "Target",
    "TrackingConfig",
    "TrainerConfig",
    "VerifierConfig",
    "ann_hash",
    "config_hash",
    "describe_config_error",
    "flatten",
    "importable",
    "is_config_error",
    "load_config",
    "one_line",
    "parse_target",
    "register_configs",
    "report_config_errors",
    "to_plain",
    "unwritable_location",
]


def load_config(cfg: DictConfig) -> Config:
    """Instantiate the schemas of a composed config, running their value checks.

    Args:
        cfg: The job config Hydra composed (without the ``hydra`` node).

    Returns:
        The typed :class:`Config`.

    Raises:
        ConfigValidationError: A value is out of range; the message names the dotted key.
    """
    try:
        typed = OmegaConf.to_object(cfg)
        calls = {group: _node(cfg, group) for group in ("model", "dataset", "ann")}
    except ValueError as exc:
        raise ConfigValidationError(str(exc)) from None
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", "") or "a key"
        hint = f": name your callable, e.g. {key}=my_nets.Net" if str(key).endswith("_target_") else ""
        raise ConfigValidationError(f"{key} is not set{hint}") from None
    except OmegaConfBaseException as exc:
        raise ConfigValidationError(one_line(exc)) from None
    if not isinstance(typed, Config):
        raise ConfigValidationError(
            f"the config must be composed on the 'evoexp_config' schema, got {type(typed).__name__}"
        )
    typed.model = typed.dataset = typed.ann = None
    _reject_extra_keys(typed, prefix="")
    check_config_settings(typed)
    typed.dataset = parse_target("dataset", calls["dataset"], own_keys=DATASET_KEYS)
    typed.model = parse_target("model", calls["model"], injected=INJECTED, own_keys=MODEL_KEYS)
    typed.ann = parse_target("ann", calls["ann"], injected=INJECTED, optional=True)
    return typed


def _node(cfg: DictConfig, group: str) -> dict[str, Any]:
    """The resolved node ``group`` of ``cfg`` as a plain dict.

    Raises:
        ConfigValidationError: The node is not a mapping.
    """
    node = OmegaConf.to_container(cfg[group], resolve=True) if OmegaConf.is_dict(cfg[group]) else cfg[group]
    if not isinstance(node, dict):
        raise ConfigValidationError(f"{group} must be a config node with _target_, got {node!r}")
    return {str(key): value for key, value in node.items()}


def _reject_extra_keys(node: Any, *, prefix: str) -> None:
    """Raise ConfigValidationError for keys appended with ``+key=value`` that no schema declares."""
    names = {f.name for f in dataclasses.fields(node)}
    for key, value in vars(node).items():
        if key not in names:
            raise ConfigValidationError(f"{prefix}{key} is not a config key (appended with '+'?)")
        if dataclasses.is_dataclass(value):
            _reject_extra_keys(value, prefix=f"{prefix}{key}.")
