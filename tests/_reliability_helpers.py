"""Helpers of the reliability tests (kill storm, preemption, full disk, I/O faults, hostile
inputs): a tiny learnable data set, real ``worker.py`` / launcher subprocesses in their own
process groups (always killed), and the store invariants every one of those tests checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from lse.config import ExperimentConfig
from lse.core.records import IndividualName
from lse.store.population import RECORD_FILE, WEIGHTS_FILE, Store
from lse.nn.synthetic import write_synthetic
from lse.runners.worker import count_births

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "worker.py"
#: the interpreter running the tests, as it was started.  Never its realpath: in a virtualenv
#: sys.executable is VENV/bin/python, a symlink to the base interpreter, and resolving it leaves
#: the venv and its packages (every worker died on import).  It is already the python binary
#: itself, not a pyenv shim, so fiu-run's preload reaches python.
PYTHON = sys.executable

#: a tiny experiment: 12x12 grey images, 5 SGD steps per child, so births come every second or so
FAST_CONFIG = dict(dataset="fashion-mnist", validation_size=100, population_size=4, steps=5,
                   eval_batch_size=100, batch_size=20)


def write_data(folder: Path) -> Path:
    return write_synthetic(folder, fmt="idx", n_train=500, n_test=100, image_shape=(12, 12), seed=3)


def make_pop(pop: Path, data: Path, **overrides) -> Store:
    cfg = ExperimentConfig(**{**FAST_CONFIG, "data_dir": str(data), **overrides})
    store = Store(pop)
    store.create(cfg)
    return store


def worker_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("LSE_LAUNCHER_PID", None)
    return env


def start_worker(pop: Path, out: Path, *args: str, prefix: tuple[str, ...] = (), device: str = "cpu") -> subprocess.Popen:
    """``worker.py --pop POP`` in its own session, stdout+stderr into ``out``."""
    argv = [*prefix, PYTHON, str(WORKER), "--pop", str(pop), "--device", device, "--threads", "1", *args]
    with open(out, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=worker_env(),
                                start_new_session=True, cwd=REPO)


def run_worker_cli(pop: Path, *args: str, timeout: float = 120, device: str = "cpu",
                   env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [PYTHON, str(WORKER), "--pop", str(pop), "--device", device, "--threads", "1", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**worker_env(), **(env or {})},
                          cwd=REPO)


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process group of ``p`` (started with start_new_session) and reap it."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=10)


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen) -> Iterator[list[subprocess.Popen]]:
    """Kills every process (group) in the list on exit, whatever happened."""
    plist = list(procs)
    try:
        yield plist
    finally:
        for p in plist:
            kill_group(p)


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (mount's syntax: "4m") mounted at ``mnt``, lazily unmounted
    at the end (a worker may still hold a file there); skips the test where mounting is not
    allowed (it needs root)."""
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def wait_for(cond: Callable[[], object], timeout: float, what: str, poll: float = 0.2,
             show: Callable[[], str] | None = None):
    """Poll ``cond`` until truthy; the bound only catches a hang (no timing is asserted).

    ``show`` (e.g. a worker's output) is called only on a time-out, so the message holds what
    was written *during* the wait: a string built before the call showed nothing of a worker
    that died on start-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    detail = ""
    if show is not None:
        try:
            detail = "\n" + show()
        except OSError as e:
            detail = f"\n(output unreadable: {e})"
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def output_of(*files: Path, pop: Path | None = None) -> Callable[[], str]:
    """For ``wait_for(show=...)``: the tail of each file and of the population's worker logs,
    read when called."""
    def read() -> str:
        parts = [f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in files if f.exists()]
        if pop is not None:
            parts.append(logs_text(pop))
        return "\n".join(parts)
    return read


def births(pop: Path) -> set[str]:
    return count_births(Store(pop))


def logs_text(pop: Path) -> str:
    logs = pop / "logs"
    if not logs.exists():
        return ""
    return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in sorted(logs.glob("*.log")))


def check_individuals(pop: Path, *, allow_foreign: bool = False) -> None:
    """No partially written individual is visible: every name in individuals/ is a real folder
    holding exactly a record (and weights, for an alive or killed-after-birth individual)."""
    store = Store(pop)
    for de in os.scandir(store.paths.individuals):
        name = IndividualName.parse(de.name)
        if name is None:
            assert allow_foreign, f"foreign entry in individuals/: {de.name!r}"
            continue
        assert de.is_dir(follow_symlinks=False), f"{de.name} is not a folder"
        files = sorted(os.listdir(de.path))
        if name.state == "alive":
            assert files == sorted([RECORD_FILE, WEIGHTS_FILE]), f"incomplete alive individual {de.name}: {files}"
        else:  # killed (weights) or born dead after a failed training (record only)
            assert files in (sorted([RECORD_FILE, WEIGHTS_FILE]), [RECORD_FILE]), f"incomplete {de.name}: {files}"


def check_alive_evaluate(pop: Path, skip: frozenset[str] = frozenset()) -> int:
    """Every alive individual loads (record + weights through Store.read_parent), builds from
    its DNA with EXACTLY its stored tensors, and reproduces its validation accuracy."""
    import torch

    from lse.nn.build import build_model
    from lse.nn.data import load_dataset
    from lse.nn.genomes import build
    from lse.core.dna import DNA
    from lse.nn.train import predict

    store = Store(pop).open()
    cfg = store.config
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed)
    store.register_worker("checker", auto_heartbeat=False)
    try:
        alive = store.list_alive()
        for e in alive:
            if e.id in skip:
                continue
            rec, state = store.read_parent(e)  # LostRace here would mean: malformed, quarantined
            if rec.genome == "autoencoder":  # seed 000: the weights reproduce the reconstruction objective
                from lse.core.autoencoder import AutoencoderGenome
                from lse.nn.autoencoder import Autoencoder, measure

                ae = Autoencoder(AutoencoderGenome.model_validate(rec.dna))
                ae.load_state_dict(state, strict=True)
                r = measure(ae, ds.val_x, ds, cfg.eval_batch_size)[1]
                assert abs(r - rec.objectives["reconstruction"]) <= 1e-5, (e.id, r, rec.objectives)
                continue
            if rec.genome == "dna":
                model = build_model(DNA.model_validate(rec.dna), ds.input_shape, ds.num_classes)
            else:  # another paper's genome kind (lse.nn.genomes)
                model = build(rec.genome, rec.dna, ds.input_shape, ds.num_classes)
            model.load_state_dict(state, strict=True)  # every tensor present, every shape right
            if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
                # the layout lse.nn.train evaluated in: near-chance models have near-tied logits,
                # and another summation order would flip their argmax
                model.to(memory_format=torch.channels_last)
            model.eval()  # a forward in train mode would update batch-norm statistics
            with torch.no_grad():
                logits = model(ds.val_x[:8].float())
            assert logits.shape == (8, ds.num_classes) and torch.isfinite(logits).all(), e.id
            pred = predict(model, ds.val_x, cfg.eval_batch_size, dataset=ds)
            acc = float((pred == ds.val_y).float().mean())
            if rec.extra.get("seeded"):
                continue  # published by the test itself with a made-up accuracy
            # The stored weights are exactly the ones that were evaluated.
            assert abs(acc - rec.val_accuracy) <= 1e-6, (e.id, acc, rec.val_accuracy)
        return len(alive)
    finally:
        store.close()


def check_history(pop: Path) -> list:
    """Every birth (listing of individuals/, gc/, history/) has exactly one readable record."""
    store = Store(pop).open()
    recs = store.records()
    ids = [r.id for r in recs]
    assert len(ids) == len(set(ids))
    missing = count_births(store) - set(ids)
    assert not missing, f"births without a record: {sorted(missing)}"
    for r in recs:
        measured = r.val_accuracy is not None or (r.genome != "dna" and r.fitness is not None)
        assert measured == (r.failed_reason is None), r.id
    return recs
