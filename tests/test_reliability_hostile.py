"""Bad and hostile inputs met by a REAL worker process (worker.py) or the lse CLI: each gets a
clear one-line message (no traceback), nothing committed is lost, and where the worker can go
on, it does.  The store-level unit tests of the same inputs are in test_store_hostile.py.

Decision on wrong-shaped weights (a parent whose tensors do not fit its own DNA): the store does
not build models, so it cannot see this; inheritance copies only tensors whose name AND shape
match (section 3.6), so the mismatched tensors are simply re-initialised in the child, which
trains and is published with weights that fit its DNA.  The damage stops at that one parent
(which dies in a tournament like any other); it never spreads to children."""

from __future__ import annotations

import json
import os
import re
import pickle
import shutil
import subprocess

import pytest
import torch

from lse.nn.data import load_dataset
from lse.errors import DataError, LostRace
from lse.core.records import IndividualName, new_id
from lse.store import Store
from lse.nn.synthetic import IDX_FILES, write_synthetic

from _reliability_helpers import (
    PYTHON, REPO, births, check_alive_evaluate, check_history, check_individuals, make_pop, run_worker_cli,
    tmpfs, worker_env, write_data,
)
from _reliability_seed import digest, seed_individuals

FOREIGN = 5000


class Boom:
    """A pickle that runs code when loaded (what torch.load of an untrusted file would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """The worker refused with exit 2 and exactly one line on stderr, naming what to fix."""
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


def _clone(store: Store, src: IndividualName | None, acc: float, tamper) -> IndividualName:
    """A copy of a good alive individual under a fresh id and fitness ``acc``, then tampered."""
    good = store.list_alive()[0]
    name = IndividualName(new_id(), "alive", acc)
    dst = store.paths.individual(name)
    shutil.copytree(good.path, dst)
    rec = json.loads((dst / "record.json").read_text())
    rec["id"] = name.id
    rec["val_accuracy"] = acc
    (dst / "record.json").write_text(json.dumps(rec))
    tamper(dst, rec)
    return name


# --------------------------------------------------------------------------------------------
# a population full of hostile entries: the worker quarantines them and keeps evolving


def test_worker_carries_on_through_a_hostile_population(tmp_path, weird_tmp_path):
    data = write_data(tmp_path / "data")
    pop = weird_tmp_path / "pop"
    make_pop(pop, data, population_size=4)
    committed = seed_individuals(pop, 4, acc0=0.2)
    store = Store(pop).open()
    marker = tmp_path / "pwned"
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("do not touch\n")

    def wrong_shapes(d, rec):  # valid safetensors whose tensors fit no model of this DNA
        from safetensors.torch import save_file

        os.unlink(d / "weights.safetensors")
        save_file({"classifier.weight": torch.zeros(3, 7), "classifier.bias": torch.zeros(3)},
                  str(d / "weights.safetensors"))

    def bad_json(d, rec):
        (d / "record.json").write_text('{"id": "' + rec["id"] + '", "dna": {')  # truncated

    def bad_dna(d, rec):
        rec["dna"]["vertices"] = rec["dna"]["vertices"][:1]  # output vertex gone
        (d / "record.json").write_text(json.dumps(rec))

    def truncated_weights(d, rec):
        w = d / "weights.safetensors"
        w.write_bytes(w.read_bytes()[:-7])

    def pickle_weights(d, rec):
        (d / "weights.safetensors").write_bytes(pickle.dumps({"classifier.weight": Boom(str(marker))}))

    def weights_to_dev_zero(d, rec):  # reading it would never end (or exhaust memory)
        os.unlink(d / "weights.safetensors")
        os.symlink("/dev/zero", d / "weights.safetensors")

    def record_symlink(d, rec):
        os.unlink(d / "record.json")
        os.symlink(secret, d / "record.json")

    hostile = {
        "wrong-shaped weights": _clone(store, None, 0.99, wrong_shapes),
        "truncated record.json": _clone(store, None, 0.98, bad_json),
        "malformed DNA": _clone(store, None, 0.97, bad_dna),
        "truncated weights": _clone(store, None, 0.96, truncated_weights),
        "pickle payload as weights": _clone(store, None, 0.95, pickle_weights),
        "record.json symlinked outside": _clone(store, None, 0.94, record_symlink),
        "weights symlinked to /dev/zero": _clone(store, None, 0.93, weights_to_dev_zero),
    }
    # An individual folder that is a symlink to a complete individual outside the population.
    shutil.copytree(store.list_alive()[0].path, outside / "ind")
    link = IndividualName(new_id(), "alive", 0.999)
    os.symlink(outside / "ind", store.paths.individual(link))
    hostile["individual symlinked outside"] = link
    # Thousands of foreign names (a user's stray files, an rsync gone wrong), and a name that
    # tries to climb out of the folder.
    for i in range(FOREIGN):
        (store.paths.individuals / f"stray file {i}.txt").write_text("x")
    (store.paths.individuals / "..%2F..%2Fetc").mkdir()
    (store.paths.history / "not-a-record.txt").write_text("x")
    outside_before = {p.name: p.read_bytes() for p in outside.rglob("*") if p.is_file()}

    before = len(births(pop))
    target = before + 10
    store.replace_config(store.config.model_copy(update={"max_individuals": target}))
    r = run_worker_cli(pop, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    err_lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr

    # The worker went on: it reached its birth bound.
    assert f"max_individuals={target}" in r.stderr
    # The payload never ran, nothing outside the population was touched or moved.
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == outside_before
    # Every hostile entry the worker met was quarantined (moved aside, never deleted); a
    # records() pass (as `lse report` does) meets the rest.
    recs = {r.id for r in Store(pop).records()}
    check_individuals(pop)  # the foreign names are gone from individuals/ (quarantined by GC)
    all_recs = Store(pop).records()
    for what in ("truncated record.json", "malformed DNA", "record.json symlinked outside",
                 "individual symlinked outside"):
        assert hostile[what].id not in recs, f"{what} was taken as a real individual"
    for what in ("truncated weights", "pickle payload as weights", "weights symlinked to /dev/zero"):
        # records never read weights; a parent's weights are read, refused and quarantined,
        # so no child can come from them
        assert not [x.id for x in all_recs if x.parent_id == hostile[what].id], f"a child of {what}"
    quarantine = Store(pop).paths.quarantine
    moved = [n for n in os.listdir(quarantine) if not n.endswith(".reason.txt")]
    # strays, the climbing name, the 4 record-level ones (weights-level ones: when read as parents)
    assert len(moved) >= FOREIGN + 1 + 4
    # No spam: thousands of foreign names give a summary, not a line each.
    assert len(err_lines) < 100, f"{len(err_lines)} lines on stderr:\n" + "\n".join(err_lines[:30])
    # Nothing committed lost; the survivors untouched.
    assert set(committed) <= recs
    for e in Store(pop).list_alive():
        if e.id in committed:
            assert digest(e.path) == committed[e.id]
    # Wrong-shaped weights: not inherited (re-initialised), the children are sound.
    wrong = hostile["wrong-shaped weights"].id
    kids = [x for x in Store(pop).records() if x.parent_id == wrong]
    for k in kids:
        assert k.inheritance is not None and k.inheritance.kept == 0
    # A weights-level hostile entry the worker never drew as a parent (10 births, tournaments of
    # 2: it happens) is still alive; reading it as a parent refuses and quarantines it, here too.
    weights_level = ("truncated weights", "pickle payload as weights", "weights symlinked to /dev/zero")
    reader = Store(pop).open()
    reader.register_worker("checker-hostile", auto_heartbeat=False)
    try:
        for e in reader.list_alive():
            if e.id in {hostile[w].id for w in weights_level}:
                with pytest.raises(LostRace, match="quarantined"):
                    reader.read_parent(e)
    finally:
        reader.close()
    assert not {hostile[w].id for w in weights_level} & {e.id for e in Store(pop).list_alive()}
    assert not marker.exists()
    check_alive_evaluate(pop, skip=frozenset({wrong}))  # strict load: every other alive individual fits its DNA
    check_history(pop)
    print(f"\nHOSTILE POPULATION: {len(hostile)} hostile individuals + {FOREIGN + 2} foreign names; "
          f"{len(moved)} entries quarantined, {len(err_lines)} stderr lines, {len(births(pop)) - before} births, "
          f"{len(kids)} children of the wrong-shaped parent (kept 0 tensors), payload ran: no, lost: 0")


# --------------------------------------------------------------------------------------------
# inputs the worker cannot run with: one line, exit 2, nothing touched


@pytest.mark.parametrize(
    "what,content,words",
    [
        ("truncated", lambda t: t[: len(t) // 2], ["experiment.json is not valid JSON", "restore it"]),
        ("binary garbage", lambda t: "\x00\x01\x02", ["not valid JSON"]),
        ("not an object", lambda t: "[1, 2]", ["experiment.json"]),
        ("newer version", lambda t: re.sub(r'"schema_version": [0-9]+', '"schema_version": 99', t, count=1),
         ["newer lse", "upgrade lse"]),
        ("field from a newer version", lambda t: t.replace("{", '{"hyperdrive": true,', 1), ["hyperdrive"]),
    ],
)
def test_bad_experiment_json(tmp_path, what, content, words):
    pop = tmp_path / "pop"
    make_pop(pop, tmp_path / "nodata")
    committed = seed_individuals(pop, 2)
    exp = pop / "experiment.json"
    exp.write_text(content(exp.read_text()))
    r = run_worker_cli(pop)
    _one_line_error(r, *words)
    assert births(pop) == set(committed) and os.listdir(pop / "workers") == []


def test_read_only_population(tmp_path):
    with tmpfs(tmp_path / "ro", "8m") as mnt:
        pop = mnt / "pop"
        make_pop(pop, tmp_path / "nodata")
        committed = seed_individuals(pop, 2)
        digests = {e.id: digest(e.path) for e in Store(pop).list_alive()}
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        r = run_worker_cli(pop)
        _one_line_error(r, "cannot write to the population", "Read-only file system", "mounted read-write")
        # Readers still work on a read-only population.
        ls = subprocess.run([PYTHON, "-c", "from lse.cli import app; app()", "pop", "ls", "--pop", str(pop), "--json"],
                            capture_output=True, text=True, env=worker_env(), cwd=REPO)
        assert ls.returncode == 0 and all(i in ls.stdout for i in committed), ls.stdout + ls.stderr
        assert {e.id: digest(e.path) for e in Store(pop).list_alive()} == digests


@pytest.mark.parametrize("fault", ["labels out of range", "images of another shape"])
def test_bad_data_set(tmp_path, fault):
    data = write_data(tmp_path / "data")
    if fault == "labels out of range":
        write_synthetic(tmp_path / "other", fmt="idx", n_train=500, n_test=100, image_shape=(12, 12),
                        num_classes=13)
        shutil.copy(tmp_path / "other" / IDX_FILES["train_labels"], data / IDX_FILES["train_labels"])
        words = ["labels range over 0..12", "10 classes"]
    else:
        write_synthetic(tmp_path / "other", fmt="idx", n_train=500, n_test=100, image_shape=(10, 10))
        for k in ("test_images", "test_labels"):
            shutil.copy(tmp_path / "other" / IDX_FILES[k], data / IDX_FILES[k])
        words = ["training images are", "test images"]
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", data, validation_size=100, cache=False)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words)
    pop = tmp_path / "pop"
    make_pop(pop, data)
    committed = seed_individuals(pop, 2)
    r = run_worker_cli(pop)
    _one_line_error(r, *words)
    assert births(pop) == set(committed) and os.listdir(pop / "workers") == []


def test_worker_without_a_gpu(tmp_path):
    """No GPU here, or (on a GPU machine) none visible to the process: as on a node whose
    GPU was not granted by the scheduler."""
    hidden = {"CUDA_VISIBLE_DEVICES": ""}
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data)
    r = run_worker_cli(pop, device="cuda", env=hidden)
    _one_line_error(r, "--device cuda", "no CUDA device", "--device cpu")
    assert births(pop) == set() and os.listdir(pop / "workers") == []
    # The launcher refuses before starting anything, also in one line.
    r = subprocess.run([PYTHON, "-m", "lse.launch", "--pop", str(pop), "--device", "cuda", "--workers", "1",
                        "--no-progress"], capture_output=True, text=True, env={**worker_env(), **hidden}, cwd=REPO,
                       timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "no CUDA device" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# store-level checks of two fixes these tests led to


def _one_parent(tmp_path):
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data)
    seed_individuals(pop, 1)
    store = Store(pop).open()
    store.register_worker("w", auto_heartbeat=False)
    return store, store.list_alive()[0]


def test_weights_symlinked_to_a_device_are_refused_not_read(tmp_path):
    from lse.errors import LostRace

    store, e = _one_parent(tmp_path)
    os.unlink(e.path / "weights.safetensors")
    os.symlink("/dev/zero", e.path / "weights.safetensors")  # read_bytes() would never return
    with pytest.raises(LostRace, match="quarantined"):
        store.read_parent(e)
    assert store.list_alive() == []
    store.close()


@pytest.mark.parametrize("code", [5, 21, 2])  # EIO, EISDIR, ENOENT: what a failing read() may say
def test_a_transient_read_error_does_not_quarantine_a_sound_parent(tmp_path, monkeypatch, code):
    """libfiu made read()/open() fail with EISDIR or ENOENT on sound individuals, which were
    then quarantined as malformed; a second look (lstat) now decides."""
    from pathlib import Path

    from lse.errors import LostRace

    import lse.store.reading as reading  # where Store.read_parent reads (lse.store.reading.Reader)

    store, e = _one_parent(tmp_path)
    real = reading.read_bytes
    calls = []

    def flaky(path, kind):
        if Path(path).name == "weights.safetensors" and not calls:
            calls.append(1)
            raise OSError(code, os.strerror(code), str(path))
        return real(path, kind)

    monkeypatch.setattr(reading, "read_bytes", flaky)
    with pytest.raises(LostRace, match="could not be read"):
        store.read_parent(e)
    assert os.listdir(store.paths.quarantine) == []
    assert store.read_parent(e)[0].id == e.id  # sound, still alive, readable next time
    store.close()


def test_generational_worker_carries_on_through_hostile_entries(tmp_path):
    """The pareto-testbed (whole-population selector reading every record through the view,
    two parents, the generation barrier) meets hostile individuals and hostile entries in
    generations/: they are quarantined, never trusted, and generations keep closing."""
    data = write_data(tmp_path / "data")
    pop = tmp_path / "pop"
    make_pop(pop, data, population_size=4, algorithm={"name": "pareto-testbed"})
    committed = seed_individuals(pop, 4, acc0=0.2)
    store = Store(pop).open()
    marker = tmp_path / "pwned"

    def bad_dna(d, rec):
        rec["dna"]["vertices"] = rec["dna"]["vertices"][:1]
        (d / "record.json").write_text(json.dumps(rec))

    def pickle_weights(d, rec):
        (d / "weights.safetensors").write_bytes(pickle.dumps({"classifier.weight": Boom(str(marker))}))

    def bad_objectives(d, rec):
        rec["objectives"] = {"val_accuracy": "<script>alert(1)</script>"}
        (d / "record.json").write_text(json.dumps(rec))

    hostile = [_clone(store, None, 0.99, bad_dna), _clone(store, None, 0.98, pickle_weights),
               _clone(store, None, 0.97, bad_objectives)]
    gens = store.paths.root / "generations"
    gens.mkdir(exist_ok=True)
    (gens / "junk.txt").write_text("x")
    os.symlink(tmp_path, gens / "7")
    before = len(births(pop))
    store.replace_config(store.config.model_copy(update={"max_individuals": before + 12}))
    r = run_worker_cli(pop, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Traceback" not in r.stderr and not marker.exists()
    recs = Store(pop).records()
    ids = {x.id for x in recs}
    assert hostile[0].id not in ids and hostile[2].id not in ids  # malformed records never taken
    assert not [x for x in recs if hostile[1].id in x.parents], "a child of the pickle-weights parent"
    assert set(committed) <= ids  # nothing committed lost
    closed = [g for g in sorted(os.listdir(gens)) if g.isdigit() and (gens / g / "plan").is_dir()]
    assert len(closed) >= 2, os.listdir(gens)
    assert not (gens / "junk.txt").exists() and not os.path.lexists(gens / "7")  # quarantined
    assert any(len(x.parents) == 2 for x in recs)
    check_alive_evaluate(pop)
