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
