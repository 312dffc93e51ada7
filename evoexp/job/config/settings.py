"""Config nodes whose keys are keyword arguments of evoexp's functions: ``trainer`` and each ``verifier.<check>``.

A setting of these nodes is written in two places: the base preset (``conf/trainer/adam.yaml``,
``conf/verifier/full.yaml``), which names the key and gives its value, and the signature of the function that takes
it (:data:`SETTINGS`), which gives its type, its default, its documentation and, through the function's argument
check (:func:`evoexp.arguments.checked_by`), its valid values. From the two, :func:`settings_schema` generates the
schema Hydra composes onto (a wrong type or an unknown key fails during composition), :func:`check_settings` runs the
functions' checks when the config is loaded (one line naming the key, e.g. ``verifier.gradient.eps=1e-20 is below
what float64 resolves``) and :func:`settings_arguments` hands each function its keys when the job calls it.

A key goes to the first function of its node (in :data:`SETTINGS`' order) that has a parameter of that name, so
``trainer.optimizer`` is :func:`~evoexp.training.make_optimizer`'s ``optimizer``, not the optimiser object that
:func:`~evoexp.training.train_model` takes.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from importlib import resources
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from evoexp.arguments import argument_check
from evoexp.data import make_loader
from evoexp.job.config.errors import ConfigValidationError
from evoexp.job.config.targets import as_keys, schema_type, signature_of, starts_with_argument
from evoexp.training import make_optimizer, train_model
from evoexp.verification.alignment import verify_gradient_alignment
from evoexp.verification.circulation import check_circulation
from evoexp.verification.convergence import analyze_training
from evoexp.verification.escape_noise import verify_escape_noise
from evoexp.verification.gradient import GradientVerifier
from evoexp.verification.sign import SignDisagreementProbe, measure_sign_disagreement
from evoexp.verification.stability import NumericalStabilityTester
from evoexp.verification.surrogate_check import verify_surrogate_gradient

__all__ = [
    "BASE_PRESETS",
    "SETTINGS",
    "check_config_settings",
    "check_settings",
    "settings_arguments",
    "settings_keys",
    "settings_schema",
]

SETTINGS: dict[str, tuple[Callable[..., Any], ...]] = {
    "trainer": (make_optimizer, make_loader, train_model),
    "verifier.gradient": (GradientVerifier.verify_finite_difference,),
    "verifier.surrogate": (verify_surrogate_gradient,),
    "verifier.alignment": (verify_gradient_alignment,),
    "verifier.stability": (
        NumericalStabilityTester.check_gradient_stability,
        NumericalStabilityTester.check_weight_stability,
    ),
    "verifier.convergence": (train_model, analyze_training),
    "verifier.circulation": (check_circulation,),
    "verifier.sign": (measure_sign_disagreement, SignDisagreementProbe.__init__),
    "verifier.escape_noise": (verify_escape_noise,),
}
"""Per config node, the functions whose keyword arguments its keys are."""

BASE_PRESETS = {"trainer": "trainer/adam.yaml", "verifier": "verifier/full.yaml"}
"""Per config group, the preset that names every key of its :data:`SETTINGS` nodes (the other presets extend it)."""


@functools.cache
def settings_keys(node: str) -> tuple[str, ...]:
    """The keys of ``node`` (a key of :data:`SETTINGS`), as its group's base preset names them."""
    group, _, child = node.partition(".")
    preset = OmegaConf.create(resources.files("evoexp.conf").joinpath(BASE_PRESETS[group]).read_text("utf-8"))
    values = preset[child] if child and isinstance(preset, DictConfig) else preset
    return tuple(str(key) for key in values if key != "defaults")


@functools.cache
def _claims(node: str) -> dict[str, Callable[..., Any]]:
    """Each key of ``node`` -> the first function of its node with a parameter of that name.

    Raises:
        TypeError: A key of the base preset is an argument of none of the node's functions.
    """
    claims: dict[str, Callable[..., Any]] = {}
    for key in settings_keys(node):
        owner = next((fn for fn in SETTINGS[node] if key in signature_of(fn)[0]), None)
        if owner is None:
            names = ", ".join(fn.__qualname__ for fn in SETTINGS[node])
            raise TypeError(f"{node}.{key} of {BASE_PRESETS[node.partition('.')[0]]} is an argument of none of {names}")
        claims[key] = owner
    return claims


def settings_schema(node: str, name: str, module: str) -> type:
    """A dataclass schema of ``node`` for Hydra's ConfigStore: one field per key, typed and defaulted by the signature.

    An argument without a default (``trainer.epochs``) is a mandatory field; its preset gives its value. The class is
    called ``name`` in ``module`` (where the caller binds it, so that a pickled config finds it).
    """
    fields: list[tuple[str, Any, Any]] = []
    for key, fn in _claims(node).items():
        parameters, _, hints = signature_of(fn)
        default = parameters[key].default
        if default is inspect.Parameter.empty:
            spec = dataclasses.field(default=MISSING)
        elif isinstance(default, (list, tuple)):
            spec = dataclasses.field(default_factory=functools.partial(list, default))
        else:
            spec = dataclasses.field(default=default)
        fields.append((key, schema_type(hints.get(key, Any)), spec))
    schema = dataclasses.make_dataclass(name, fields)
    schema.__module__ = module  # make_dataclass takes module= from Python 3.12 on
    return schema


def settings_arguments(node: str, values: Any, fn: Callable[..., Any]) -> dict[str, Any]:
    """The keys of ``node`` that go to ``fn`` (one of ``SETTINGS[node]``), read from ``values``, its loaded schema.

    Lists become tuples (the functions take sequences); the node's other keys are not read.
    """
    if fn not in SETTINGS[node]:
        raise ValueError(f"{fn.__qualname__} takes no keys of {node}")
    arguments = {key: getattr(values, key) for key, owner in _claims(node).items() if owner is fn}
    return {key: tuple(value) if isinstance(value, list) else value for key, value in arguments.items()}


def check_settings(node: str, values: Any) -> None:
    """Run each function's argument check on the keys of ``node`` it takes (the call's defaults fill in the rest).

    Raises:
        ConfigValidationError: A check refused a value; one line naming the key (``trainer.lr must be ...``).
    """
    for fn in SETTINGS[node]:
        check = argument_check(fn)
        if check is None:
            continue
        bound = inspect.signature(fn).bind_partial(**settings_arguments(node, values, fn))
        bound.apply_defaults()
        try:
            check(bound.arguments)
        except ValueError as exc:
            message = " ".join(str(exc).split())
            parameters = tuple(signature_of(fn)[0])
            if starts_with_argument(parameters, message):
                raise ConfigValidationError(as_keys(node, parameters, message)) from None
            raise ConfigValidationError(f"{node}: {message}") from None


def check_config_settings(config: Any) -> None:
    """:func:`check_settings` on every node of :data:`SETTINGS` of a loaded config (``config.verifier.gradient``, ...).

    Raises:
        ConfigValidationError: A check refused a value; one line naming the key.
    """
    for node in SETTINGS:
        values = config
        for part in node.split("."):
            values = getattr(values, part)
        check_settings(node, values)
