"""Files that are whole or absent: every record a job or sweep writes goes through :func:`write_atomic`.

A plain ``write_text`` that hits a full disk (``ENOSPC``) or is interrupted leaves a truncated or empty file, which a
later reader takes for a record (a 0-byte ``evoexp_outcome.json`` crashed the sweep summary). :func:`write_atomic`
writes a temporary file next to the target, flushes it to disk and renames it over the target: readers see the old
file or the new one, never a part; on failure the temporary file is removed and the error raised.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file + rename) and return ``path``.

    The parent directory is created if missing.

    Raises:
        OSError: The file could not be written (e.g. ``ENOSPC``, read-only file system); ``path`` is unchanged and
            no temporary file is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make the records private to this user
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
