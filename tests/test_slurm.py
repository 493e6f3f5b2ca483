"""Slurm backend: the rendered script against a recorded one, and a real single-node Slurm."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lse.errors import ConfigError, LaunchError
from lse.runners.slurm import SlurmOptions, load_template, render_sbatch

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


# --------------------------------------------------------------------------------------------
# a real single-node Slurm (slow suite)

import os  # noqa: E402
import time  # noqa: E402

import psutil  # noqa: E402

from lse.runners.launch import launch_slurm, prepare_experiment  # noqa: E402
from lse.store.population import Store  # noqa: E402
from lse.nn.synthetic import write_synthetic  # noqa: E402

from slurm_cluster import SlurmCluster, unavailable_reason  # noqa: E402


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no real Slurm here: {reason}")
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("data"), fmt="cifar10", n_train=1500, n_test=300)


def _experiment(pop, data, **kw):
    given = dict(dataset="cifar10", data_dir=str(data), validation_size=300, population_size=4, steps=30)
    given.update(kw)
    return prepare_experiment(pop, given, workers=2, echo=lambda s: None)


def _consistent(pop):
    store = Store(pop).open()
    assert os.listdir(store.paths.workers) == [], "private scratch left behind"
    for e in store.list_alive():
        assert sorted(os.listdir(e.path)) == ["record.json", "weights.safetensors"]
    return store.records()


def _no_worker_processes(pop):
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        assert not (any(c.endswith("worker.py") for c in cmd) and str(pop) in cmd), f"worker {p.pid} still runs"


def _slurm_logs(pop, cluster):
    out = [f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}" for f in sorted((pop / "logs").glob("*"))]
    return "\n".join(out) + "\n" + cluster.logs()


@pytest.mark.slow
def test_job_array_reaches_its_stop(slurm_cluster, cifar_dir, weird_tmp_path):
    pop = weird_tmp_path / "pop"  # spaces and quotes: the script must quote it
    _experiment(pop, cifar_dir, max_individuals=8)
    job = launch_slurm(pop, SlurmOptions(workers=2, cpus_per_task=1), device="cpu", env=slurm_cluster.env(),
                       echo=lambda s: None)
    try:
        slurm_cluster.wait_job(job, timeout=400)
    except TimeoutError:
        pytest.fail("job array did not finish\n" + _slurm_logs(pop, slurm_cluster))
    recs = _consistent(pop)
    assert len(recs) == 8, _slurm_logs(pop, slurm_cluster)
    # both array tasks ran a worker (how the 8 births split between them is timing: one task
    # starting a few seconds late may find them all taken)
    outs = list((pop / "logs").glob("slurm-*_*.out"))
    assert len(outs) == 2, _slurm_logs(pop, slurm_cluster)
    started = {m for f in (pop / "logs").glob("*.log")
               for m in re.findall(r"worker (\S+) on \S+ started \(pid", f.read_text(errors="replace"))}
    assert len(started) == 2 and {r.worker for r in recs} <= started, (started, _slurm_logs(pop, slurm_cluster))
    _no_worker_processes(pop)


@pytest.mark.slow
def test_scancel_mid_run_leaves_a_consistent_store_that_resumes(slurm_cluster, cifar_dir, tmp_path):
    pop = tmp_path / "pop"
    _experiment(pop, cifar_dir, steps=2500)  # no bound: only scancel stops it
    env = slurm_cluster.env()
    job = launch_slurm(pop, SlurmOptions(workers=2), device="cpu", env=env, echo=lambda s: None)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        logs = [f.read_text(errors="replace") for f in (pop / "logs").glob("*.log")]
        if sum(t.count("born ") for t in logs) >= 1 and sum(t.count("training ") for t in logs) >= 3:
            break
        time.sleep(0.2)
    else:
        pytest.fail("workers did not train\n" + _slurm_logs(pop, slurm_cluster))
    slurm_cluster.run(["scancel", job])
    slurm_cluster.wait_job(job, timeout=120)
    _no_worker_processes(pop)
    births = len(_consistent(pop))
    assert births >= 1
    assert any("signal SIGTERM" in f.read_text(errors="replace") for f in (pop / "logs").glob("*.log")), \
        _slurm_logs(pop, slurm_cluster)

    # A new launch resumes it: one more birth, then the bound stops the new array.
    _experiment(pop, cifar_dir, steps=2500, max_individuals=births + 1)
    job2 = launch_slurm(pop, SlurmOptions(workers=1), device="cpu", env=env, echo=lambda s: None)
    slurm_cluster.wait_job(job2, timeout=300)
    assert len(_consistent(pop)) == births + 1, _slurm_logs(pop, slurm_cluster)
