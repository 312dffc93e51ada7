"""The code identity: which code computed a result (``evoexp <version> src <digest> torch <version>``).

A run records it (tag ``evoexp.code_identity`` of :mod:`evoexp.keys`), and so does every committed result that evoexp
writes outside MLflow (the cross-library agreement of :mod:`evoexp.crosscheck`, the theory tables), so a reader can
tell which code produced a number and a test can tell whether the current code still produces it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch

import evoexp

__all__ = ["code_identity", "source_digest"]

_EXCLUDED_SOURCE = ("analysis", "job/analysis")
"""Subpackages (paths relative to the package) left out of the source digest: they only read finished runs, never
change a result."""


def source_digest(package: Path) -> str:
    """First 12 hex digits of the SHA-256 over the relative path and content of each ``.py`` file under ``package``.

    Files under the subpackages in :data:`_EXCLUDED_SOURCE` are left out.
    """
    sha = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        folder = relative.parent.as_posix()
        if any(folder == excluded or folder.startswith(f"{excluded}/") for excluded in _EXCLUDED_SOURCE):
            continue
        sha.update(relative.as_posix().encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()[:12]


@functools.cache
def code_identity() -> str:
    """Identity of the code that computes a run: ``evoexp <version> src <digest> torch <version>``.

    The digest (:func:`source_digest`) covers the source of the installed ``evoexp`` package, so an editable
    checkout with local changes, a wheel and a release of the same version are told apart by what they would
    compute, while a change to documentation or to the analysis code does not invalidate a sweep.
    """
    package = Path(evoexp.__file__).resolve().parent
    return f"evoexp {evoexp.__version__} src {source_digest(package)} torch {torch.__version__}"
