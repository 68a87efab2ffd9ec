"""The README is a front page: it opens with the two commands, stays under 12 KB, and
every document, image and file it or docs/ links to is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|<img [^>]*src=\"([^\"]+)\"")


def test_the_readme_opens_with_the_two_commands_and_stays_small() -> None:
    """`make run` and `make test` come first; the whole page is under 12 KB."""
    text = README.read_text()
    first = text.split("\n\n", 1)[0]
    assert "make run" in first and "make test" in first
    assert len(text.encode()) < 12 * 1024


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_resolves(page: Path) -> None:
    """A relative link or image names a file or folder that exists."""
    missing = []
    for found in LINK.finditer(page.read_text()):
        target = found.group(1) or found.group(2)
        if re.match(r"[a-z]+:", target):
            continue
        if not (page.parent / target).exists():
            missing.append(target)
    assert not missing, f"{page.name} links to missing {missing}"


def test_the_readme_shows_every_screen() -> None:
    """Each screenshot the README shows is committed under docs/images."""
    shown = re.findall(r"src=\"(docs/images/[^\"]+)\"", README.read_text())
    assert {Path(s).stem.split("-")[0] for s in shown} >= {"display", "phone", "console",
                                                          "admin"}
