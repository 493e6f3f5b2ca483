"""The distribution's name (issue 20, item 8): ``lse`` on PyPI is an unrelated web scraper,
so ``pip install lse`` would install someone else's code.  The distribution has a free name;
the import package and the console command stay ``lse``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

if sys.version_info < (3, 11):  # pragma: no cover
    pytest.skip("tomllib is Python 3.11+", allow_module_level=True)
import tomllib


def test_distribution_name_is_not_the_unrelated_pypi_lse():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "large-scale-evolution"
    assert project["scripts"] == {"lse": "lse.cli:app"}


def test_the_installed_distribution_provides_import_lse():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("large-scale-evolution")
    except PackageNotFoundError:
        pytest.skip("not installed as a distribution here (run from a source tree)")
    assert any(ep.name == "lse" and ep.value == "lse.cli:app" for ep in dist.entry_points)


def _bash_blocks(text: str) -> list[str]:
    blocks, cur = [], None
    for line in text.splitlines():
        if line == "```bash":
            cur = []
        elif line == "```" and cur is not None:
            blocks.append("\n".join(cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def test_readme_setup_uses_a_venv_on_the_distributions_python_and_ci_runs_it():
    # issue 20, item 2: pip into the system Python is refused (PEP 668) on Debian 12 / Ubuntu
    # 24.04; the two commands must work there, and CI runs them from the README itself
    setup, tests = _bash_blocks((REPO / "README.md").read_text())[:2]
    assert "\n" not in setup.strip() and "\n" not in tests.strip()  # one command each
    assert "apt-get install -y python3 python3-venv dataset-fashion-mnist" in setup
    assert "/usr/bin/python3 -m venv .venv" in setup and ".venv/bin/pip install torch==2.13.0 -e '.[test]'" in setup
    assert ".venv/bin/python -m lse.launch" in setup and " pip install" not in setup.replace(".venv/bin/pip install", "")
    assert tests.strip() == ".venv/bin/python -m pytest"
    ci = (REPO / ".ci" / "run").read_text()
    assert 'bash -euo pipefail -c "$(readme_block 1)"' in ci and 'bash -euo pipefail -c "$(readme_block 2)"' in ci
    assert "rm -rf .venv" in ci and "-m pytest -m slow" in ci
