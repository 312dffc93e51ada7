"""The one error type of NIR import and export: a single line naming the file, node or key at fault."""

from __future__ import annotations

__all__ = ["NIRError"]


class NIRError(ValueError):
    """A NIR graph, file or argument evoexp cannot use; the message is one line naming what is wrong and where."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
