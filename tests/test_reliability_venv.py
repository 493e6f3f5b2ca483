"""The reliability helpers from inside a virtualenv (issue 20, item 1).

Inside a venv, ``sys.executable`` is ``VENV/bin/python``, a symlink to the base interpreter;
``os.path.realpath`` of it leaves the venv and loses every package installed there, so every
worker the helpers started died on import (13 reliability tests timed out).  Here a throwaway
venv (no pip: a fraction of a second) sees this suite's packages through a ``.pth`` file only,
exactly like a venv into which lse was installed, and the helpers run from it must start
their workers inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from _reliability_helpers import PYTHON, REPO, births, make_pop, wait_for, write_data


def test_helpers_use_this_interpreter_not_its_realpath():
    assert PYTHON == sys.executable


def test_wait_for_message_shows_output_written_during_the_wait(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("before\n")
    start = time.monotonic()

    def cond():
        if time.monotonic() - start > 0.3:
            out.write_text("before\nworker died: ModuleNotFoundError: No module named 'torch'\n")
        return False

    with pytest.raises(AssertionError) as e:
        wait_for(cond, 1.0, "births", show=out.read_text, poll=0.05)
    assert "No module named 'torch'" in str(e.value)


def _venv_seeing_these_packages(root: Path) -> Path:
    """A venv whose only way to lse, torch, pytest ... is a .pth (site.addsitedir on each of
    this interpreter's site folders, so editable installs' own .pth files are honoured too)."""
    r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create a venv here (Debian: apt-get install python3-venv): {r.stderr.strip()}")
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    sites = [p for p in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path])
             if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p)]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in sites)
    (Path(purelib) / "outer-suite.pth").write_text(lines)
    return py


def test_helpers_start_workers_inside_a_virtualenv(tmp_path):
    venv = tmp_path / "venv"
    py = _venv_seeing_these_packages(venv)
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data, max_individuals=2)
    code = (
        "import json, subprocess, sys; sys.path.insert(0, 'tests'); import _reliability_helpers as h\n"
        "prefix = subprocess.run([h.PYTHON, '-c', 'import sys, lse, torch; print(sys.prefix)'],"
        " capture_output=True, text=True)\n"
        f"r = h.run_worker_cli({str(pop)!r}, timeout=240)\n"
        "print(json.dumps({'python': h.PYTHON, 'prefix': prefix.stdout.strip(), 'prefix_err': prefix.stderr[-2000:],"
        " 'rc': r.returncode, 'err': r.stderr[-3000:]}))\n"
    )
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["python"] == str(py)
    # the interpreter the helpers start is the venv's, with the venv's packages
    assert Path(got["prefix"]) == venv, got["prefix_err"]
    assert got["rc"] == 0, got["err"]
    assert len(births(pop)) == 2
