"""Slurm backend: the rendered script against a recorded one, and a real single-node Slurm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lse.errors import ConfigError, LaunchError
from lse.slurm import SlurmOptions, load_template, render_sbatch

EXPECTED = Path(__file__).parent / "data" / "lse-array.expected.sbatch"
NASTY_POP = "/shared/pop 1/it's \"x\" 50%"


def _render(**kw) -> str:
    opts = dict(workers=4, partition="gpu", time="1-00:00:00", gpus_per_task=1, cpus_per_task=8, mem="32G",
                account="ml lab's", requeue=True)
    opts.update(kw)
    pop = opts.pop("pop", NASTY_POP)
    return render_sbatch(load_template(), options=SlurmOptions.parse(opts), pop_dir=pop, log_dir=pop + "/logs",
                         python="/opt/conda/bin/python", worker_script="/src/lse/worker.py",
                         worker_args=["--device", "cuda"])


def test_render_matches_the_recorded_script():
    assert _render() == EXPECTED.read_text()


def test_script_is_valid_bash_and_quotes_the_nasty_path(tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(_render())
    subprocess.run(["bash", "-n", str(script)], check=True)
    # What bash would hand the worker: the exact path, one argument.
    line = [ln for ln in _render().splitlines() if ln.startswith("exec ")][0]
    out = subprocess.run(["bash", "-c", line.replace("exec ", "printf '%s\\n' ", 1)],
                         capture_output=True, text=True, env={"SLURM_CPUS_PER_TASK": "8"}).stdout.splitlines()
    assert out == ["/opt/conda/bin/python", "/src/lse/worker.py", "--pop", NASTY_POP, "--device", "cuda",
                   "--threads", "8"]


def test_minimal_options_render_no_optional_directives():
    s = render_sbatch(load_template(), options=SlurmOptions(workers=2), pop_dir="/p", log_dir="/p/logs",
                      python="python3", worker_script="/w.py")
    for flag in ("--partition", "--time", "--gpus-per-task", "--mem", "--account", "--requeue"):
        assert flag not in s
    assert "#SBATCH --array=0-1" in s and "#SBATCH --output=/p/logs/slurm-%A_%a.out" in s


@pytest.mark.parametrize("bad", [{"time": "tomorrow"}, {"mem": "lots"}, {"workers": 0}, {"colour": "red"}])
def test_invalid_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        SlurmOptions.parse({"workers": 2, **bad})


def test_paths_sbatch_cannot_carry_are_refused():
    with pytest.raises(LaunchError, match="backslash|cannot carry"):
        _render(pop="/a\\b")
    with pytest.raises(LaunchError):
        _render(pop="/a\nb")
