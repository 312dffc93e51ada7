"""Config nodes that are constructor calls: ``_target_`` names a callable, the other keys are its arguments.

The ``model``, ``dataset`` and ``ann`` groups are written the Hydra way (docs/guides/your-network.md)::

    model:
      _target_: evoexp.models.lif_snn   # any importable callable returning an nn.Module
      hidden_sizes: [128]               # its keyword arguments
      input_layout: batch_first         # evoexp's own keys (MODEL_KEYS): how the network is fed and read

A setting is written in two places only: the YAML preset and the callable's signature. :func:`parse_target` checks a
node against the signature when the config is loaded (the target imports, every key is an argument, the required
ones are there, each value fits its annotation) and :func:`call` makes the call with :func:`hydra.utils.instantiate`,
adding what only the data knows (:data:`INJECTED`) when the signature accepts it. Values are checked by the callable
itself when it is called (before any run starts); its messages start with the argument's name, which
:func:`call` prefixes with the group (``model.tau_mem must be ...``). evoexp's own callables also get a structured
schema generated from their signature (:func:`structured_schema`), so a wrong type or an unknown key of a preset fails
while Hydra composes the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import logging
import re
import sys
import types
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from hydra.utils import instantiate
from omegaconf import MISSING

from evoexp.arguments import argument_check
from evoexp.job.config.errors import ConfigValidationError

__all__ = [
    "DATASET_KEYS",
    "INJECTED",
    "MODEL_KEYS",
    "ModelTarget",
    "Target",
    "as_keys",
    "call",
    "importable",
    "parse_target",
    "schema_type",
    "signature_of",
    "source_digests",
    "starts_with_argument",
    "structured_schema",
]

INJECTED: tuple[str, ...] = ("n_inputs", "n_classes", "time_steps", "input_shape", "surrogate")
"""What evoexp passes to a model (or ANN) callable whose signature has a parameter of that name: ``n_inputs`` (input
values per step: ``C``, or ``C*H*W`` for images; the ANN: its static features), ``n_classes``, ``time_steps``,
``input_shape`` (one step's sample, ``(C,)`` or ``(C, H, W)``; the ANN: one sample's features) and ``surrogate`` (the
configured evoexp shape, a :class:`~evoexp.surrogate.SurrogateGradient`)."""

MODEL_KEYS: dict[str, Any] = {
    "name": None,
    "input_layout": "batch_first",
    "output_index": None,
    "time_reduction": "none",
}
"""evoexp's own keys of the ``model`` node (never passed to the callable), with their defaults: ``name`` (label in
reports and tables; null: the callable's name), ``input_layout``, ``output_index`` and ``time_reduction``
(:mod:`evoexp.models.feed`)."""

DATASET_KEYS: dict[str, Any] = {"name": None}
"""evoexp's own key of the ``dataset`` node: ``name``, its label in reports and tables (null: the callable's name)."""

_HYDRA_KEYS = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_")


@dataclass(frozen=True)
class Target:
    """A validated constructor call of one config group.

    Attributes:
        group: The config group (``model``, ``dataset``, ``ann``): the prefix of every message.
        path: The dotted path of the callable; ``None`` only for ``ann`` (no ANN configured).
        args: Its keyword arguments from the config.
        accepts: The names of :data:`INJECTED` its signature accepts (evoexp passes them).
        parameters: Every parameter name of its signature (to name the argument a message starts with).
        name: Label in reports and tables (``model.name``, ``dataset.name``; default: the callable's name).
    """

    group: str
    path: str | None
    args: dict[str, Any] = field(default_factory=dict)
    accepts: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    name: str = ""

    @property
    def configured(self) -> bool:
        """Whether a callable is named."""
        return self.path is not None

    @property
    def short_name(self) -> str:
        """The callable's own name (``my_nets.Net`` -> ``Net``)."""
        return "" if self.path is None else self.path.rsplit(".", 1)[-1]

    def source(self) -> dict[str, Any]:
        """The call as a plain dict: ``{"_target_": path, **args}``."""
        return {"_target_": self.path, **self.args}


@dataclass(frozen=True)
class ModelTarget(Target):
    """The ``model`` node: a :class:`Target` plus evoexp's own keys (:data:`MODEL_KEYS`).

    Attributes:
        input_layout: ``batch_first`` or ``time_first``.
        output_index: Element of a tuple output holding the class scores, or None.
        time_reduction: ``none``, ``sum``, ``mean``, ``max`` or ``last``.
    """

    input_layout: str = "batch_first"
    output_index: int | None = None
    time_reduction: str = "none"


def importable(directory: Path | str) -> None:
    """Put ``directory`` (the launch directory) first on ``sys.path``, as ``python -m`` does, unless it is there."""
    path = str(Path(directory).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


def locate(group: str, path: str) -> Callable[..., Any]:
    """The callable at dotted ``path``.

    Raises:
        ConfigValidationError: One line: the module cannot be imported, lacks the name, or it is not callable.
    """
    if not isinstance(path, str) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", path):
        raise ConfigValidationError(f"{group}._target_ must be a dotted path such as my_nets.Net, got {path!r}")
    parts = path.split(".")
    module, found = None, 0
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            this = exc.name == name or (exc.name is not None and name.startswith(exc.name + "."))
            if this and end > 1:
                continue  # a shorter prefix is the module, the rest are attributes
            missing = exc.name or name
            where = f"; modules in the launch directory {Path.cwd()} are importable" if this else ""
            raise ConfigValidationError(f"{group}._target_={path}: cannot import {missing!r} ({exc}){where}") from None
        except Exception as exc:
            raise ConfigValidationError(
                f"{group}._target_={path}: importing {name} raised {type(exc).__name__}: {_one_line(exc)}"
            ) from exc
        found = end
        break
    obj: Any = module
    for attribute in parts[found:]:
        if not hasattr(obj, attribute):
            raise ConfigValidationError(
                f"{group}._target_={path}: {'.'.join(parts[:found]) or path} has no attribute {attribute!r}"
            )
        obj = getattr(obj, attribute)
        found += 1
    if not callable(obj):
        raise ConfigValidationError(f"{group}._target_={path} is a {type(obj).__name__}, not a callable")
    return obj


def _one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def signature_of(fn: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool, dict[str, Any]]:
    """``(keyword parameters, accepts **kwargs, resolved annotations)`` of ``fn`` (a class: its ``__init__``)."""
    signature = inspect.signature(fn)
    parameters = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    var_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # unresolvable annotations (names under TYPE_CHECKING): values are not type-checked
        hints = {}
    return parameters, var_keyword, hints


def _fits(value: Any, annotation: Any) -> bool | None:
    """Whether a config value fits ``annotation`` (None: cannot tell, e.g. a class that the callable converts to)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return None
    if origin is typing.Annotated:
        return _fits(value, args[0])
    if origin in (Union, types.UnionType):
        verdicts = [_fits(value, a) for a in args]
        return True if True in verdicts else (None if None in verdicts else False)
    if annotation is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is Path:
        return isinstance(value, (str, Path))
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        element = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else None
        if element is None:
            return None if origin is tuple and args else True
        verdicts = [_fits(v, element) for v in value]
        return False if False in verdicts else (None if None in verdicts else True)
    if origin in (dict, Mapping, typing.Mapping) or annotation is dict:
        return isinstance(value, dict)
    return None


def _describe(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "")


def parse_target(
    group: str,
    node: Mapping[str, Any],
    *,
    injected: Sequence[str] = (),
    own_keys: Mapping[str, Any] | None = None,
    optional: bool = False,
) -> Target:
    """Check a config node against its callable's signature.

    Args:
        group: The config group (prefix of every message).
        node: The resolved node: ``_target_`` and the arguments (plus ``own_keys``).
        injected: The names evoexp passes when the signature accepts them.
        own_keys: evoexp's own keys of this node with their defaults (never passed to the callable): ``name``, and
            for a :class:`ModelTarget` the feeding keys of :data:`MODEL_KEYS`.
        optional: ``_target_: null`` is allowed (nothing configured).

    Returns:
        The :class:`Target` (a :class:`ModelTarget` when ``own_keys`` has the feeding keys).

    Raises:
        ConfigValidationError: One line naming the key: the target cannot be imported, a key is not an argument, a
            required argument is missing, a value does not fit its annotation, or a key is evoexp's to pass.
    """
    values = dict(node)
    own = {key: values.pop(key, default) for key, default in (own_keys or {}).items()}
    path = values.pop("_target_", None)
    hydra_keys = sorted(k for k in values if k in _HYDRA_KEYS)
    if hydra_keys:
        raise ConfigValidationError(f"{group}.{hydra_keys[0]} is set by evoexp, not in the config")
    if path is None:
        if not optional:
            raise ConfigValidationError(f"{group}._target_ must name a callable (e.g. {group}._target_=my_nets.Net)")
        if values:
            raise ConfigValidationError(f"{group}.{sorted(values)[0]} is set, but {group}._target_ is null")
        return Target(group, None)
    fn = locate(group, path)
    parameters, var_keyword, hints = signature_of(fn)
    for key, value in values.items():
        if key in injected:
            raise ConfigValidationError(
                f"{group}.{key} is passed by evoexp from the data and the config; remove it from the config"
            )
        if key not in parameters and not var_keyword:
            names = ", ".join(n for n in parameters if n not in injected) or "none"
            raise ConfigValidationError(f"{group}.{key} is not an argument of {path} (its arguments: {names})")
        annotation = hints.get(key)
        if annotation is not None and _fits(value, annotation) is False:
            raise ConfigValidationError(
                f"{group}.{key}={value!r} does not fit {_describe(annotation)}, its type in {path}'s signature"
            )
    for name, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and name not in values and name not in injected:
            raise ConfigValidationError(f"{group}.{name} is required by {path} (no default); add +{group}.{name}=...")
    accepts = tuple(name for name in injected if name in parameters)
    label = str(own["name"]) if own.get("name") is not None else path.rsplit(".", 1)[-1]
    if "input_layout" not in own:
        target = Target(group, path, values, accepts, tuple(parameters), label)
    else:
        target = ModelTarget(group, path, values, accepts, tuple(parameters), label, own["input_layout"],
                             own["output_index"], own["time_reduction"])
    _check_arguments(target, fn)
    return target


def _check_arguments(target: Target, fn: Callable[..., Any]) -> None:
    """Run the callable's own argument check (:func:`evoexp.arguments.checked_by`) on the config's arguments.

    Raises:
        ConfigValidationError: The check refused an argument (one line naming the key).
    """
    check = argument_check(fn)
    if check is None:
        return
    bound = inspect.signature(fn).bind_partial(**target.args)
    bound.apply_defaults()
    try:
        check(bound.arguments)
    except ValueError as exc:
        message = _one_line(exc)
        if _starts_with_argument(target, message):
            raise ConfigValidationError(_as_keys(target, message)) from None
        raise ConfigValidationError(f"{target.group}: {target.path}: {message}") from None


def call(target: Target, **injected: Any) -> Any:
    """Call ``target`` with its config arguments (:func:`hydra.utils.instantiate`) and the ``injected`` it accepts.

    The config arguments go through Hydra's instantiation (``_partial_``, plain containers); the injected objects are
    passed as they are. Warnings the callable issues are logged once per process on ``evoexp.job.config``, with its
    arguments named as config keys (``model.dt=100 is larger than model.tau_mem=20 ...``).

    Raises:
        ConfigValidationError: The callable raised; one line that names the config keys when the message starts with
            an argument's name (the callable's check of that argument), else names the callable and the exception.
    """
    if target.path is None:
        raise ValueError(f"{target.group}._target_ is null: nothing to call")
    partial = instantiate({"_target_": target.path, **target.args}, _partial_=True, _convert_="all")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            built = partial(**{name: value for name, value in injected.items() if name in target.accepts})
    except Exception as exc:
        message = _one_line(exc)
        if isinstance(exc, ValueError) and _starts_with_argument(target, message):
            raise ConfigValidationError(_as_keys(target, message)) from exc
        raise ConfigValidationError(f"{target.group}: {target.path} raised {type(exc).__name__}: {message}") from exc
    for warning in caught:
        message = " ".join(str(warning.message).split())
        _warn_once(_as_keys(target, message) if _starts_with_argument(target, message) else message)
    return built


def _starts_with_argument(target: Target, message: str) -> bool:
    return starts_with_argument(target.parameters, message)


def _as_keys(target: Target, message: str) -> str:
    return as_keys(target.group, target.parameters, message)


def starts_with_argument(parameters: Sequence[str], message: str) -> bool:
    """Whether ``message`` starts with one of ``parameters`` (an argument check's message names its argument first)."""
    first = re.match(r"[A-Za-z_]\w*", message)
    return first is not None and first.group(0) in parameters


def as_keys(group: str, parameters: Sequence[str], message: str) -> str:
    """``message`` with the arguments it names written as config keys of ``group`` (``split`` -> ``dataset.split``).

    Named are: the first word, and every argument name followed by ``=`` or containing an underscore (a whole word,
    not part of a dotted name), so that plain words such as "the test split" stay words.
    """
    names = "|".join(re.escape(name) for name in sorted(parameters, key=len, reverse=True))

    def key(match: re.Match[str]) -> str:
        name = match.group(1)
        first = match.start() == 0
        return f"{group}.{name}" if first or "_" in name or match.group(2) else name

    return re.sub(rf"(?<![\w.'\"])({names})\b(?!\.)(=?)", lambda m: key(m) + m.group(2), message)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` as one warning line on ``evoexp.job.config``, once per process."""
    if message not in _warned:
        _warned.add(message)
        logging.getLogger("evoexp.job.config").warning(message)


def schema_type(annotation: Any) -> Any:
    """The OmegaConf field type of a signature annotation (``Any`` where OmegaConf has none)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return schema_type(args[0])
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        kinds = {schema_type(a) for a in members}
        inner = kinds.pop() if len(kinds) == 1 else Any
        return inner if inner is Any or len(members) == len(args) else typing.Optional[inner]  # noqa: UP045
    if origin is Literal:
        kinds = {type(a) for a in args}
        return kinds.pop() if len(kinds) == 1 and kinds <= {str, int} else Any
    if annotation in (int, float, bool, str):
        return annotation
    if annotation is Path:
        return str
    if origin in (list, tuple, Sequence, typing.Sequence):
        element = schema_type(args[0]) if args else Any
        return list[element] if element in (int, float, bool, str) else list[Any]  # type: ignore[valid-type]
    if origin in (dict, Mapping, typing.Mapping):
        return dict[str, Any]
    return Any


def source_digests(*targets: Target) -> dict[str, str]:
    """Per group, a digest of the source file of the module a target's path names, for modules outside evoexp.

    evoexp's own code is covered by the code identity (:func:`evoexp.identity.code_identity`); a user's network,
    ANN or dataset file is not, so a job's identity includes this digest: after an edit to ``my_nets.py`` the sweep
    runs again instead of resuming (the file of the module named by ``_target_`` counts, not the modules it imports).
    """
    package = Path(__file__).resolve().parents[2]
    digests = {}
    for target in targets:
        if target.path is None:
            continue
        locate(target.group, target.path)  # imports the module the path names
        parts = target.path.split(".")
        module = next(sys.modules[name] for name in (".".join(parts[:n]) for n in range(len(parts), 0, -1))
                      if name in sys.modules)
        file = getattr(module, "__file__", None)
        if file is None or Path(file).resolve().is_relative_to(package):
            continue
        digests[target.group] = hashlib.sha256(Path(file).read_bytes()).hexdigest()[:12]
    return digests


def _copier(value: list[Any]) -> Callable[[], list[Any]]:
    """A default factory returning a copy of ``value``."""
    return lambda: list(value)


def structured_schema(
    fn: Callable[..., Any],
    path: str,
    *,
    injected: Sequence[str] = (),
    own_keys: Mapping[str, Any] | None = None,
) -> type:
    """A dataclass schema of the call ``fn(...)`` for Hydra's ConfigStore: ``_target_`` and one field per argument.

    Fields are typed from the signature (where OmegaConf has a type for the annotation) and default to the signature's
    defaults; ``injected`` parameters are left out (evoexp passes them), ``own_keys`` are added.
    """
    parameters, _, hints = signature_of(fn)
    fields: list[tuple[str, Any, Any]] = [("_target_", str, field(default=path))]
    for name, parameter in parameters.items():
        if name in injected:
            continue
        kind = schema_type(hints.get(name, Any))
        default = parameter.default
        if default is inspect.Parameter.empty:
            fields.append((name, kind, field(default=MISSING)))
        elif isinstance(default, (list, tuple)):
            fields.append((name, kind, field(default_factory=_copier(list(default)))))
        else:
            fields.append((name, kind, field(default=default)))
    for name, default in (own_keys or {}).items():
        kind = {"output_index": typing.Optional[int], "name": typing.Optional[str]}.get(name, str)  # noqa: UP045
        fields.append((name, kind, field(default=default)))
    return dataclasses.make_dataclass(f"{path.rsplit('.', 1)[-1]}_config", fields)
