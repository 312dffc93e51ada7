"""Every local file the README links or shows (figures above all) is tracked by git, so no image is broken on main."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"<img[^>]*\ssrc=\"([^\"]+)\"", re.IGNORECASE)


def local_links(markdown: str) -> list[str]:
    """Relative paths that Markdown links, images and ``<img src>`` in ``markdown`` point at (anchors dropped)."""
    targets = [*_LINK.findall(markdown), *_HTML_SRC.findall(markdown)]
    paths = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # http(s)://, mailto:, in-page anchors
        path = target.split("#", 1)[0]
        if path and path not in paths:
            paths.append(path)
    return paths


def untracked(paths: list[str], repo: Path) -> list[str]:
    """The paths among ``paths`` that git does not track in ``repo``."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True).stdout
    tracked = set(listing.split("\0"))
    return [p for p in paths if p not in tracked]


def _git_checkout() -> bool:
    return shutil.which("git") is not None and (REPO / ".git").exists()


def test_local_links_finds_images_links_and_html() -> None:
    text = (
        "![a](docs/a.png) [b](docs/b.md#part) [web](https://x.org/c.png) [top](#setup) [mail](mailto:a@b.c)\n"
        '<img width="30%" src="docs/c.svg"> ![a again](docs/a.png "title") ![e](<docs/e.png>)'
    )
    assert local_links(text) == ["docs/a.png", "docs/b.md", "docs/e.png", "docs/c.svg"]


@pytest.mark.skipif(not _git_checkout(), reason="not a git checkout")
def test_untracked_reports_a_file_git_does_not_track() -> None:
    missing = "docs/results/never-committed.png"
    assert untracked(["README.md", missing], REPO) == [missing]


@pytest.mark.skipif(not _git_checkout(), reason="not a git checkout")
def test_every_local_file_the_readme_links_is_tracked() -> None:
    links = local_links((REPO / "README.md").read_text(encoding="utf-8"))
    images = [p for p in links if p.lower().endswith((".png", ".svg", ".jpg", ".jpeg", ".gif", ".pdf"))]
    assert images, "the README shows no figure at all; the link pattern is probably broken"
    assert untracked(links, REPO) == [], "README links files that git does not track (commit them under docs/)"
