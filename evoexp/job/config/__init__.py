"""Typed configuration of evoexp: dataclass schemas, ConfigStore registration, validation and identities.

:func:`load_config` turns the DictConfig that Hydra composed into the typed :class:`Config` (running every schema's
value checks) and raises :class:`ConfigValidationError` with a one-line message naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evoexp.job.config.errors import (
    ConfigValidationError,
    describe_config_error,
    is_config_error,
    one_line,
    report_config_errors,
)
from evoexp.job.config.identity import ann_hash, code_identity, config_hash, flatten, to_plain
from evoexp.job.config.schema import (
    DATASET_SCHEMAS,
    AlignmentCheckConfig,
    Config,
    ConvergenceCheckConfig,
    CrosscheckConfig,
    DebugConfig,
    DigitsConfig,
    GradientCheckConfig,
    ModelConfig,
    RandmanConfig,
    StabilityCheckConfig,
    SurrogateCheckConfig,
    SurrogateConfig,
    SyntheticConfig,
    TrackingConfig,
    TrainerConfig,
    VerifierConfig,
    unwritable_location,
)
from evoexp.job.config.store import register_configs

__all__ = [
    "DATASET_SCHEMAS",
    "AlignmentCheckConfig",
    "Config",
    "ConfigValidationError",
    "ConvergenceCheckConfig",
    "CrosscheckConfig",
    "DebugConfig",
    "DigitsConfig",
    "GradientCheckConfig",
    "ModelConfig",
    "RandmanConfig",
    "StabilityCheckConfig",
    "SurrogateCheckConfig",
    "SurrogateConfig",
    "SyntheticConfig",
    "TrackingConfig",
    "TrainerConfig",
    "VerifierConfig",
    "ann_hash",
    "code_identity",
    "config_hash",
    "describe_config_error",
    "flatten",
    "is_config_error",
    "load_config",
    "one_line",
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
    except ValueError as exc:
        raise ConfigValidationError(str(exc)) from None
    if not isinstance(typed, Config):
        raise ConfigValidationError(
            f"the config must be composed on the 'evoexp_config' schema, got {type(typed).__name__}"
        )
    _reject_extra_keys(typed, prefix="")
    return typed


def _reject_extra_keys(node: Any, *, prefix: str) -> None:
    """Raise ConfigValidationError for keys appended with ``+key=value`` that no schema declares."""
    names = {f.name for f in dataclasses.fields(node)}
    for key, value in vars(node).items():
        if key not in names:
            raise ConfigValidationError(f"{prefix}{key} is not a config key (appended with '+'?)")
        if dataclasses.is_dataclass(value):
            _reject_extra_keys(value, prefix=f"{prefix}{key}.")
