"""``python -m evoexp.crosscheck``: compare one network across evoexp, snnTorch, SpikingJelly and Norse.

Usage::

    python -m evoexp.crosscheck [--nir FILE] [--out DIR] [--network feedforward|recurrent|all]
                                [--libraries snntorch,spikingjelly,norse] [--align CAUSE ...]
                                [--steps N] [--batch N] [--seed N] [--formats png,pdf] [KEY=VALUE ...]

Without ``--nir`` the reference networks (:mod:`evoexp.crosscheck.references`) are compared. ``KEY=VALUE`` overrides
set what NIR does not carry: ``dt=``, ``reset=subtract|zero``, ``surrogate=<name>``, ``surrogate.<param>=``,
``decay=euler|exp``, ``conventions=nir|evoexp``, ``detach_reset=true|false``. Writes ``agreement.csv``,
``agreement.md`` and one ``agreement_<network>.png``/``.pdf`` per network into ``--out`` (default
``crosscheck``). Every bad input is one line on stderr and exit status 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import inspect
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from evoexp.crosscheck.catalogue import CATALOGUE
from evoexp.crosscheck.compare import CrosscheckResult, crosscheck
from evoexp.crosscheck.references import REFERENCE_SETTINGS, REFERENCES, reference_graph
from evoexp.crosscheck.report import write_report
from evoexp.identity import code_identity
from evoexp.nir.errors import NIRError
from evoexp.nir.network import from_nir
from evoexp.surrogate import get_surrogate

__all__ = ["main", "parse_overrides"]

_KEYS = ("dt", "reset", "surrogate", "decay", "conventions", "detach_reset")
_DEFAULTS = {name: p.default for name, p in inspect.signature(crosscheck).parameters.items()}
"""The comparison's defaults, from :func:`~evoexp.crosscheck.compare.crosscheck`'s signature."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evoexp.crosscheck", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nir", help="NIR file to compare (default: the reference networks)")
    parser.add_argument("--out", default="crosscheck", help="output folder (default: crosscheck)")
    parser.add_argument("--network", default="all", choices=(*REFERENCES, "all"),
                        help="reference network(s) when no --nir is given")
    parser.add_argument("--libraries", default=None, help="comma-separated peer libraries (default: all three)")
    parser.add_argument("--align", action="append", default=[], choices=sorted(CATALOGUE),
                        help="align this cause in the peers where the library has a setting for it (repeatable)")
    parser.add_argument("--steps", type=int, default=_DEFAULTS["steps"],
                        help=f"time steps of the input (default {_DEFAULTS['steps']})")
    parser.add_argument("--batch", type=int, default=_DEFAULTS["batch"], help=f"samples (default {_DEFAULTS['batch']})")
    parser.add_argument("--seed", type=int, default=_DEFAULTS["seed"],
                        help=f"seed of the input and targets (default {_DEFAULTS['seed']})")
    parser.add_argument("--formats", default="png,pdf", help="figure formats, comma-separated (default png,pdf)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"settings: {', '.join(_KEYS)}, "
                                                                          "surrogate.<param>")
    return parser


def _value(key: str, text: str) -> Any:
    if key == "dt":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"dt={text!r} is not a number") from None
    if key == "detach_reset":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"detach_reset={text!r} must be true or false")
        return text.lower() == "true"
    return text


def parse_overrides(items: Sequence[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``KEY=VALUE`` overrides as keyword arguments of :func:`~evoexp.nir.from_nir`, on top of ``base``.

    Raises:
        ValueError: a malformed item, an unknown key, a bad value or surrogate parameter (naming the key).
    """
    settings = dict(base or {})
    surrogate_params: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        if key.startswith("surrogate."):
            try:
                surrogate_params[key.split(".", 1)[1]] = float(text)
            except ValueError:
                raise ValueError(f"{key}={text!r} is not a number") from None
        elif key in _KEYS:
            settings[key] = _value(key, text)
        else:
            raise ValueError(f"unknown key {key!r}; keys: {', '.join(_KEYS)}, surrogate.<param>")
    if surrogate_params:
        shape = settings.get("surrogate")
        if shape is None:
            raise ValueError("surrogate.<param> given without surrogate=<name>")
        name = shape if isinstance(shape, str) else shape.name
        settings["surrogate"] = get_surrogate(name, **surrogate_params)
    return settings


def _summary(result: CrosscheckResult) -> list[str]:
    lines = [f"{result.network}: {', '.join(result.libraries)} ({result.seconds:.1f} s)"]
    lines += [f"  skipped {lib}: {reason}" for lib, reason in result.skipped.items()]
    lines += [f"  non-finite gradients in {lib}: {', '.join(modes)}" for lib, modes in result.nonfinite.items()]
    for p in result.pairs:
        first = "same" if p.forward.first_divergence is None else f"step {p.forward.first_divergence}"
        lines.append(f"  {p.library_a:>12} / {p.library_b:<12} forward {first:>8}  smooth {p.smooth.max_rel:.1e}  "
                     f"spiking {p.spiking64.max_rel:.1e}  causes: {', '.join(p.causes) or 'none'}"
                     + (f"  UNEXPLAINED: {'; '.join(p.unexplained)}" if p.unexplained else ""))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; return the exit status (0: done, 1: an unexplained difference, 2: bad input)."""
    args = _parser().parse_args(argv)
    command = "python -m evoexp.crosscheck " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        libraries = None if args.libraries is None else [s.strip() for s in args.libraries.split(",") if s.strip()]
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        unknown = sorted(set(formats) - {"png", "pdf", "svg"})
        if unknown or not formats:
            raise ValueError(f"--formats: unsupported {', '.join(unknown) or 'empty list'}; choose from png, pdf, svg")
        results = []
        if args.nir:
            settings = parse_overrides(args.overrides)
            net = from_nir(args.nir, **settings)
            results.append(crosscheck(net, libraries=libraries, align=args.align, steps=args.steps,
                                      batch=args.batch, seed=args.seed, label=args.nir))
        else:
            settings = parse_overrides(args.overrides, dict(REFERENCE_SETTINGS))
            names = REFERENCES if args.network == "all" else (args.network,)
            for name in names:
                net = from_nir(reference_graph(name, seed=args.seed), **settings)
                results.append(crosscheck(net, libraries=libraries, align=args.align, steps=args.steps,
                                          batch=args.batch, seed=args.seed, label=name))
    except (NIRError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        print("\n".join(_summary(result)))
    written = write_report(results, args.out, command=command, code=code_identity(), formats=formats)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
