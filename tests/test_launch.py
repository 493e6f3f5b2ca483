"""End to end: the local launcher runs real worker processes training real (tiny) models.

Data: write_synthetic in the CIFAR format (3 colour channels, so the initial individuals --
global pooling + linear, section 3.3 -- see only the mean colour and stay poor, while one
inserted convolution already does much better).  Mutation weights favour
insert_convolution so that a dozen births reliably contain such a child.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lse.config import ExperimentConfig
from lse.errors import ConfigError
from lse.runners.launch import deaths_text, prepare_experiment
from lse.store import Store
from lse.nn.synthetic import write_synthetic

FAST = ["--dataset", "cifar10", "--validation-size", "300", "--threads", "1", "--no-progress"]
MUTATIONS = ["--mutation-prob", "insert_convolution=3", "--mutation-prob", "identity=1",
             "--mutation-prob", "alter_learning_rate=1", "--mutation-prob", "alter_channels=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("data"), fmt="cifar10", n_train=1500, n_test=300)


def _launch(pop: Path, data: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lse.launch", "--pop", str(pop), "--data-dir", str(data), *FAST, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr + _logs(pop)
    return r


def _logs(pop: Path) -> str:
    out = []
    for f in sorted((pop / "logs").glob("*.log")) if (pop / "logs").exists() else []:
        out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}")
    return "\n".join(out)


def _consistent(pop: Path) -> list:
    store = Store(pop).open()
    assert os.listdir(store.paths.workers) == [], "private scratch left behind"
    for e in store.list_alive():
        assert sorted(os.listdir(e.path)) == ["record.json", "weights.safetensors"], e.path
    recs = store.records()
    assert len({r.id for r in recs}) == len(recs)
    return recs


def _no_workers_left(pop: Path) -> None:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        assert not (any(c.endswith("worker.py") for c in cmd) and str(pop) in cmd), f"worker left running: {p.pid}"


def test_evolution_end_to_end(tmp_path, data_dir):
    pop = tmp_path / "pop"
    r = _launch(pop, data_dir, "--workers", "2", "--population-size", "6", "--steps", "80",
                "--max-individuals", "14", *MUTATIONS)
    recs = _consistent(pop)
    assert len(recs) == 14  # births match the stop count exactly
    assert "max_individuals=14 reached" in r.stdout and "best individual:" in r.stdout and "lse report --pop" in r.stdout
    assert f"individuals: 14 ({deaths_text(x.failed_reason for x in recs)})" in r.stdout
    workers = {r.worker for r in recs}
    # both workers ran (how the 14 births split between them is timing: 7/7 and 9/5 were seen)
    started = {m for f in (pop / "logs").glob("*.log")
               for m in re.findall(r"worker (\S+) on \S+ started \(pid", f.read_text(errors="replace"))}
    assert len(started) == 2 and workers <= started, (started, workers)
    for rec in recs:
        assert rec.flops and rec.flops.total > 0 and rec.params and rec.train_seconds is not None
        assert rec.host and rec.born_at and rec.steps == (80 if rec.failed_reason is None else rec.steps)
        if rec.parent_id:
            assert rec.mutation and rec.inheritance is not None and rec.generation >= 1
    initial = [x.val_accuracy for x in recs if x.parent_id is None and x.val_accuracy is not None]
    best = max(x.val_accuracy for x in recs if x.val_accuracy is not None)
    print(f"\nE2E: births={len(recs)} best initial={max(initial):.4f} best={best:.4f}")
    assert 5 <= len([x for x in recs if x.parent_id is None]) <= 6  # 5: claims in one tick, see initial_rank
    assert best > max(initial)
    saved = json.loads((pop / "experiment.json").read_text())
    assert saved["max_individuals"] == 14 and saved["mutation_probabilities"]["insert_convolution"] == 3
    assert all((pop / "logs" / f"{w}.log").exists() for w in workers)
    _no_workers_left(pop)


def test_the_summary_says_what_the_children_died_of():
    """A search's own deaths (a mutated learning rate diverging) are named, not a bare "failed";
    a child cut off by the deadline is never published, so it is not among them."""
    assert deaths_text([None, None]) == "none died"
    reasons = [None, "diverged: non-finite loss by step 20", "diverged: non-finite loss by step 40",
               "RuntimeError: shapes do not match"]
    assert deaths_text(reasons) == "3 died in training: 2 diverged, 1 RuntimeError"


@pytest.mark.parametrize("control", [["--selection", "random"], ["--no-inheritance"]])
def test_controls_complete(tmp_path, data_dir, control):
    pop = tmp_path / "pop"
    _launch(pop, data_dir, "--workers", "2", "--population-size", "4", "--steps", "30", "--max-individuals", "8",
            *control)
    recs = _consistent(pop)
    assert len(recs) == 8
    cfg = Store(pop).open().config
    if control[0] == "--selection":
        assert cfg.selection == "random"
    else:
        assert cfg.inheritance is False
        assert all(r.inheritance.kept == 0 for r in recs if r.parent_id)


def test_sigint_stops_mid_training_then_a_launch_resumes(tmp_path, data_dir):
    pop = tmp_path / "pop"
    # Trainings of a few seconds: SIGINT arrives while the workers are inside train().
    cmd = [sys.executable, "-m", "lse.launch", "--pop", str(pop), "--data-dir", str(data_dir), *FAST,
           "--workers", "2", "--population-size", "4", "--steps", "2500"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            logs = [f.read_text() for f in (pop / "logs").glob("*.log")] if (pop / "logs").exists() else []
            # one birth, and both workers busy with a later child
            if sum(t.count("born ") for t in logs) >= 1 and sum(t.count("training ") for t in logs) >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("workers did not start training\n" + _logs(pop))
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)  # within seconds; the bound only catches a hang
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert "SIGINT" in out
    _no_workers_left(pop)
    births = len(_consistent(pop))  # nothing half-published: children in training were dropped
    assert births >= 1
    assert any("discarded, nothing published" in f.read_text() for f in (pop / "logs").glob("*.log"))

    # A new launch resumes the interrupted experiment (stop fields may change)...
    r = _launch(pop, data_dir, "--workers", "1", "--max-individuals", str(births + 1), timeout=180)
    assert "resuming" in r.stdout
    assert len(_consistent(pop)) == births + 1
    # ...but is refused when it would change what is being searched.
    with pytest.raises(ConfigError, match="steps: 2500 -> 30"):
        prepare_experiment(pop, {"steps": 30}, echo=lambda s: None)


def test_resume_rules(tmp_path):
    pop = tmp_path / "pop"
    quiet = lambda s: None  # noqa: E731
    cfg = prepare_experiment(pop, {"steps": 10}, workers=3, echo=quiet, check_data=False)
    assert cfg.population_size == 12  # 4 x workers, the paper's ratio
    assert prepare_experiment(pop, {}, workers=7, echo=quiet) == cfg  # no options: resume as saved
    with pytest.raises(ConfigError) as e:
        prepare_experiment(pop, {"selection": "random", "seed": 3}, echo=quiet)
    assert "seed: 0 -> 3" in str(e.value) and "selection: 'tournament' -> 'random'" in str(e.value)
    store = Store(pop)
    created = os.stat(store.paths.experiment).st_mtime
    time.sleep(0.02)
    assert prepare_experiment(pop, {"max_hours": 2.0}, echo=quiet).max_hours == 2.0
    assert os.stat(store.paths.experiment).st_mtime == created  # creation time kept
    store.request_stop()
    forced = prepare_experiment(pop, {"seed": 3}, force=True, echo=quiet)
    assert forced.seed == 3 and Store(pop).open().config.seed == 3
    assert not store.stop_requested()  # launching removes an old STOP file
    with pytest.raises(ConfigError, match="selection"):
        prepare_experiment(tmp_path / "other", {"selection": "roulette"}, echo=quiet)
    with pytest.raises(ConfigError, match="unknown mutation"):
        prepare_experiment(tmp_path / "other2", {"mutation_probabilities": {"grow": 1.0}}, echo=quiet)


def test_ratio_warning_and_stop_command(tmp_path):
    pop = tmp_path / "pop"
    msgs = []
    prepare_experiment(pop, {"population_size": 4}, workers=3, echo=msgs.append, check_data=False)
    assert any("warning" in m and "3 workers" in m for m in msgs)
    r = subprocess.run([sys.executable, "-c", "from lse.cli import app; app()", "stop", "--pop", str(pop)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Store(pop).stop_requested() and "wrote" in r.stdout


def test_slurm_dry_run_prints_the_script(tmp_path, weird_tmp_path):
    pop = weird_tmp_path / "pop"
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(pop), "--slurm", "--workers", "3",
                        "--time", "1:00:00", "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "#SBATCH --array=0-2" in r.stdout and "#SBATCH --time=1:00:00" in r.stdout
    assert not pop.exists()  # a dry run creates nothing


def test_a_missing_data_set_is_reported_before_anything_is_created(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "pop"), "--dataset", "cifar10",
                        "--data-dir", str(tmp_path / "nowhere"), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 1 and "cifar10 not found" in r.stderr
    assert not (tmp_path / "pop" / "experiment.json").exists()


def test_warm_starts_initial_dna_and_seed_from(tmp_path, data_dir):
    """--initial-dna: every initial individual is the given net; --seed-from: a new experiment
    starts from another's alive individuals, weights included, re-evaluated on its own split."""
    import torch

    from lse.core.dna import initial_dna
    from lse.core.mutations import mutate
    import random

    dna = initial_dna(0.05, input_channels=3)
    for _ in range(2):
        dna, _ = mutate(dna, random.Random(1), {"insert_convolution": 1})
    dna_file = tmp_path / "net.json"
    dna_file.write_text(dna.to_json())
    src = tmp_path / "src"
    _launch(src, data_dir, "--workers", "1", "--population-size", "3", "--steps", "20", "--max-individuals", "3",
            "--initial-dna", str(dna_file))
    recs = _consistent(src)
    assert len(recs) == 3 and all(r.dna == json.loads(dna.to_json()) and not r.parents for r in recs)
    assert Store(src).open().config.initial_dna == json.loads(dna.to_json())

    dst = tmp_path / "dst"
    r = _launch(dst, data_dir, "--workers", "1", "--population-size", "3", "--steps", "20", "--max-individuals", "5",
                "--seed-from", str(src), "--algorithm", "regularized", "--algorithm-option", "tournament_size=2")
    assert "seeded 3 individual(s)" in r.stdout, r.stdout
    store = Store(dst).open()
    assert store.config.algorithm.name == "regularized" and store.config.algorithm.options == {"tournament_size": 2}
    recs = _consistent(dst)
    seeded = [x for x in recs if "seeded_from" in x.extra]
    assert len(seeded) == 3 and len(recs) == 5  # the seeds are the initial population
    src_ids = {x.id for x in Store(src).open().records()}
    assert {x.extra["seeded_from"].rsplit(":", 1)[1] for x in seeded} <= src_ids
    for x in seeded:  # weights came along: the copy's weights equal its source's
        sid = x.extra["seeded_from"].rsplit(":", 1)[1]
        w_src, w_dst = Store(src).open().load_weights(sid), store.load_weights(x.id)
        if w_src is not None and w_dst is not None:
            assert all(torch.equal(w_src[k], w_dst[k]) for k in w_src)
    children = [x for x in recs if x.parents]
    assert children and all(set(c.parents) <= {s.id for s in seeded} | {x.id for x in recs} for c in children)
    bad = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "x"), "--data-dir", str(data_dir),
                          *FAST, "--initial-dna", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and "--initial-dna" in bad.stderr and len(bad.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("args, flip", [((), True), (("--no-flip",), False), (("--dataset", "mnist"), False),
                                        (("--dataset", "mnist", "--flip"), True)])
def test_flip_is_an_experiment_option(tmp_path, args, flip):
    assert _prepared_config(tmp_path, *args).flip is flip


def _prepared_config(tmp_path, *args):
    """`lse.launch --prepare-only ARGS` on a small generated data set; the saved configuration."""
    pop = tmp_path / "pop"
    write_synthetic(tmp_path / "d", "idx", n_train=100, n_test=20)
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(pop), "--data-dir", str(tmp_path / "d"),
                        "--validation-size", "10", "--prepare-only", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Store(pop).open().config


@pytest.mark.parametrize("args, channels", [((), None), (("--preset", "quick"), [8, 16, 32]),
                                            (("--insert-channels", "16,64"), [16, 64]),
                                            (("--preset", "quick", "--insert-channels", "4"), [4])])
def test_insert_channels_from_the_command_line(tmp_path, args, channels):
    """--insert-channels sets the channel draw of inserted convolutions; it wins over a preset's."""
    assert _prepared_config(tmp_path, *args).insert_channels == channels


@pytest.mark.parametrize("args, schedule", [((), None),
                                            (("--preset", "hour"), [(15, 1000), (25, 2000)]),
                                            (("--steps-from", "2000@1h", "--steps-from", "800@90s"), [(1.5, 800), (60, 2000)]),
                                            (("--preset", "hour", "--steps-from", "900@10"), [(10, 900)])])
def test_steps_from_the_command_line(tmp_path, args, schedule):
    """--steps-from sets the step schedule (any order, in any duration unit); it wins over a preset's."""
    assert _prepared_config(tmp_path, *args).steps_schedule == schedule


@pytest.mark.parametrize("value", ["1000", "x@5m", "1000@5q", "0@5m"])
def test_bad_steps_from_are_one_line_errors(tmp_path, value):
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "pop"), "--steps-from", value,
                        "--prepare-only"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "steps" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pop").exists()


@pytest.mark.parametrize("value", ["16,x", "", "0"])
def test_bad_insert_channels_are_one_line_errors(tmp_path, value):
    r = subprocess.run([sys.executable, "-m", "lse.launch", "--pop", str(tmp_path / "pop"), "--insert-channels", value,
                        "--prepare-only"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "insert" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pop").exists()


def test_a_second_launch_on_a_finished_experiment_explains_itself(tmp_path, data_dir):
    """The quick-start trap: the same command twice on one folder.  The second run must say in one
    line which stop condition is met and how to extend it or start fresh, start no worker, and
    exit 0; the extension it suggests must then work."""
    pop = tmp_path / "pop"
    args = ["--workers", "1", "--population-size", "3", "--steps", "20", "--max-individuals", "3"]
    _launch(pop, data_dir, *args)
    logs = sorted((pop / "logs").iterdir())
    again = _launch(pop, data_dir, *args)  # asserts exit status 0
    lines = again.stdout.strip().splitlines()
    assert len(lines) == 1, again.stdout
    assert "nothing to do" in lines[0] and "max_individuals=3 reached" in lines[0], lines[0]
    assert "--max-individuals 6" in lines[0] and "another --pop" in lines[0] and str(pop) in lines[0]
    assert again.stderr == ""
    assert sorted((pop / "logs").iterdir()) == logs  # no worker was started
    assert len(_consistent(pop)) == 3

    extended = _launch(pop, data_dir, *args[:-1], "4")
    assert "resuming" in extended.stdout and "nothing to do" not in extended.stdout
    assert len(_consistent(pop)) == 4


def test_a_finished_max_hours_names_its_time_and_extends_on_resume(tmp_path):
    from lse.runners.launch import finished_line

    pop = tmp_path / "pop"
    quiet = lambda s: None  # noqa: E731
    prepare_experiment(pop, {"max_hours": 0.1}, echo=quiet, check_data=False)
    store = Store(pop).open()
    assert finished_line(store) is None  # just created: work left
    created = time.time() - 3600  # as if created an hour ago
    os.utime(store.paths.experiment, (created, created))
    line = finished_line(store)
    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(created + 360))
    assert line is not None and f"max_hours=0.1 reached at {at}" in line, line
    # the suggested limit gives as long again from now: the hour elapsed plus the old 0.1
    suggested = float(re.search(r"--max-hours (\d+(?:\.\d+)?)", line).group(1))
    assert 1.1 < suggested <= 1.12
    msgs = []
    prepare_experiment(pop, {"max_hours": 0.1}, echo=msgs.append)
    assert not any("resuming" in m for m in msgs)  # the one line is the caller's
    prepare_experiment(pop, {"max_hours": suggested}, echo=msgs.append)  # a stop field: may change on resume
    assert finished_line(Store(pop).open()) is None and any("resuming" in m for m in msgs)


@pytest.mark.parametrize("entry", [["-m", "lse.launch"], ["-c", "from lse.cli import app; app()", "launch"]])
def test_launch_help_shows_every_option_whole_at_80_columns(entry):
    import re

    import typer

    from lse.runners.launch import _command

    app = typer.Typer(add_completion=False)
    app.command()(_command())
    names = [n for p in typer.main.get_command(app).params for n in (*p.opts, *p.secondary_opts)]
    assert len(names) > 40 and "--initial-learning-rate" in names and "--algorithm-option" in names
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    r = subprocess.run([sys.executable, *entry, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    too_wide = [ln for ln in r.stdout.splitlines() if len(ln) > 80]
    assert not too_wide, too_wide
    cut = [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w…-])", r.stdout)]
    assert not cut, f"option names not shown whole at 80 columns: {cut}"
    for folder in ("$LSE_DATA", "~/.local/share/lse/data", "/usr/share/datasets/fashion-mnist"):
        assert folder in r.stdout.replace("\n" + " " * 34, " ")  # every folder a data set is looked up in


def test_a_crashed_worker_that_gave_birth_restarts_at_once_by_its_heartbeat(tmp_path):
    """The launcher tells a crash-looping worker from one that made progress by the births its
    heartbeat reports (it used to grep the worker's log for "born ")."""
    from lse.runners.launch import LaunchOptions, LocalLauncher
    from lse.store import Store

    pop = tmp_path / "pop"
    Store(pop).create(ExperimentConfig(population_size=4, steps=10))
    launcher = LocalLauncher(pop, LaunchOptions(workers=2, device="cpu"), echo=lambda s: None, progress=False)
    quiet, busy = launcher.slots
    for slot, births in ((quiet, 0), (busy, 3)):
        slot.worker_id, slot.started, slot.quick_crashes = f"crashed-{slot.index}", time.monotonic(), 2
        handle = Store(pop).open().register_worker(slot.worker_id, auto_heartbeat=False)
        handle.births = births
        handle.heartbeat()  # what the worker's loop does after each birth; then it is killed
        launcher._on_exit(slot, -9)
    assert busy.births == 3 and busy.quick_crashes == 1  # progress: restarted at once
    assert quiet.births == 0 and quiet.quick_crashes == 3  # no progress: backing off
    assert busy.next_start < quiet.next_start
