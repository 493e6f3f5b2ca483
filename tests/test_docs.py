"""The README and docs/ as a new user meets them: short, first things first, every figure traceable
to the command that made it, every link pointing at a file that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MANIFEST = ROOT / "docs" / "figures" / "MANIFEST.json"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*\ssrc=\"([^\"]+)\"")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _flat(text: str) -> str:
    """Text with markdown code quotes, shell line continuations and line breaks flattened, so a
    command wrapped over two lines of a page still reads as the one command."""
    return " ".join(text.replace("\\\n", " ").replace("`", " ").split())


def _bash_blocks(text: str) -> list[str]:
    # the same rule as .ci/run's readme_block: from a ```bash line to the next ``` line
    return re.findall(r"^```bash\n(.*?)^```$", text, flags=re.S | re.M)


def _shown_images() -> dict[str, Path]:
    shown = {}
    for page in _pages():
        for m in IMAGE.finditer(page.read_text()):
            target = m.group(1) or m.group(2)
            if not re.match(r"[a-z]+://", target):
                shown[(page.parent / target).resolve().relative_to(ROOT).as_posix()] = page
    return shown


def test_every_figure_shown_is_in_the_manifest_with_a_command_the_docs_name():
    figures = json.loads(MANIFEST.read_text())["figures"]
    shown = _shown_images()
    assert "docs/figures/quickstart-progress.png" in shown  # the README's own figure is seen
    missing = {f: str(p.relative_to(ROOT)) for f, p in shown.items() if f not in figures}
    assert not missing, f"figures shown but not in docs/figures/MANIFEST.json: {missing}"
    corpus = _flat("\n".join(p.read_text() for p in _pages()))
    for fig, entry in figures.items():
        assert (ROOT / fig).is_file(), f"{fig} is in the manifest but not in the repository"
        assert _flat(entry["command"]) in corpus, f"{fig}: its command is named nowhere in README/docs: {entry['command']}"
        data = entry.get("data")
        if data:
            assert (ROOT / data).exists(), f"{fig}: its data {data} is not in the repository"


def test_the_readme_is_short_and_its_first_screen_holds_the_set_up_and_the_three_paths():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) < 150, f"README has {len(lines)} lines"
    blocks = _bash_blocks(text)
    # .ci/run runs the first two bash blocks: set-up + quick start on a fresh machine, then the tests
    setup, tests = blocks[0].strip(), blocks[1].strip()
    assert setup.startswith("apt-get update") and "/usr/bin/python3 -m venv .venv" in setup
    assert "torch==2.13.0" in setup and ".venv/bin/python -m lse.launch --preset hour" in setup
    assert tests == ".venv/bin/python -m pytest"
    first_screen = "\n".join(lines[:40])
    assert all(b in first_screen for b in blocks[:2])
    for anchor in ("#1-try-it-on-a-cpu", "#2-reproduce-real-et-al-2017", "#3-your-gpu-box"):
        assert f"]({anchor})" in first_screen, anchor
        heading = anchor[1:].replace("-", " ")
        assert any(re.sub(r"[^a-z0-9 ]", "", ln.lower()).strip() == heading
                   for ln in lines if ln.startswith("## ")), f"no section for {anchor}"
    first = text.index("±")  # ± is defined where it first appears
    assert "mean ± 2 sample standard deviations" in text[first - 100:first + 200]


def test_the_readme_names_papers_and_folders_instead_of_internal_references():
    text = README.read_text()
    assert not re.search(r"\bissue \d+|\bseed 00\d", text, flags=re.I)
    for folder in ("$LSE_DATA", "~/.local/share/lse/data", "/usr/share/datasets/fashion-mnist"):
        assert folder in text


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_point_at_files_and_headings_that_exist(page):
    broken = []
    for m in LINK.finditer(page.read_text()):
        target, _, anchor = m.group(1).partition("#")
        if re.match(r"[a-z]+:", target):
            continue
        dest = page.parent / target if target else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(m.group(1))
    assert not broken, broken


def test_the_architecture_tree_names_every_module_of_the_package():
    """docs/ARCHITECTURE.md describes the code as it is: a module added without a line in its
    tree fails here, naming the module."""
    tree = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    tree = tree.split("```", 2)[1]
    named = set(re.findall(r"[\w]+\.py", tree))
    modules = sorted(p for p in (ROOT / "lse").rglob("*.py") if p.name != "__init__.py")
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in named]
    assert missing == [], f"add these to the tree in docs/ARCHITECTURE.md: {missing}"
