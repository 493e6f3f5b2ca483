"""A population for the dashboard tests: real store births, schema-v2 fields written into some
records (extra keys, which today's parser ignores), a record whose text fields hold markup, and
hostile entries of the kinds the store's tests plant."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from _store_helpers import make_record, make_weights, new_store

from lse.core.records import new_id

SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'


def v2_fields(k: int) -> dict:
    """Fields of the algorithms to come: objectives, fitness, age, species, barrier generation."""
    return {
        "parents": [],
        "objectives": {"compression": 0.1 * k, "reconstruction": 1.0 - 0.1 * k - (0.3 if k == 2 else 0.0)},
        "fitness": 0.5 + 0.01 * k,
        "age": k,
        "species": f"s{k % 2}",
        "barrier_generation": k // 2,
    }


def _rewrite(path: Path, update: dict) -> None:
    data = json.loads(path.read_text())
    data.update(update)
    path.write_text(json.dumps(data))


def make_population(root: Path, v2: bool = True, hostile: bool = True) -> dict:
    """Returns what was planted: ids of the good individuals, the markup individual, the killed one."""
    store = new_store(root)
    store.register_worker(auto_heartbeat=False)
    a = make_record(0.30)
    store.publish(a, make_weights(0))
    b = make_record(0.45, parent=a)
    store.publish(b, make_weights(1))
    c = make_record(0.40, parent=b)
    store.publish(c, make_weights(2))
    d = make_record(0.60, parent=b)
    store.publish(d, make_weights(3))
    failed = make_record(None, parent=d, failed_reason="diverged: " + SCRIPT)
    store.publish(failed, None, alive=False)
    # A valid record whose every free text field holds markup: shown as text, never run.
    markup = make_record(0.55, parent=d, host=SCRIPT, extra={"note": IMG, "x": SCRIPT})
    store.publish(markup, make_weights(4))
    killed = store.list_alive()[0]  # a, the oldest
    assert store.kill(killed)
    store.paths.eval.mkdir(exist_ok=True)
    (store.paths.eval / f"{d.id}.json").write_text(json.dumps({"id": d.id, "test_accuracy": 0.58, "test_fingerprint": "x"}))
    if v2:
        for k, e in enumerate(store.list_alive()):
            _rewrite(store.paths.record_file(e.path), v2_fields(k))
        _rewrite(store.paths.record_file(store.find(markup.id).path), {"species": IMG})
    bad = []
    if hostile:
        ind = store.paths.individuals
        # Malformed record (not JSON, with markup inside), an incomplete folder, a symlink, stray names.
        m = ind / f"{new_id()}.alive.0.900000"
        m.mkdir()
        (m / "record.json").write_text('{"id": "' + SCRIPT + '", broken')
        (m / "weights.safetensors").write_bytes(b"x")
        (ind / f"{new_id()}.alive.0.800000").mkdir()
        os.symlink("/etc", ind / f"{new_id()}.alive.0.700000")
        (ind / "evil<script>alert(1)<").mkdir()  # no "/" possible in a name
        (ind / "stray.txt").write_text(SCRIPT)
        (store.paths.history / f"{new_id()}.json").write_text(SCRIPT)
        (store.paths.quarantine / "old-entry.1234abcd").mkdir()
        (store.paths.quarantine / "old-entry.1234abcd.reason.txt").write_text("reason: " + SCRIPT)
        bad = ["malformed", "incomplete", "history"]
    store.close()
    return {"good": [a.id, b.id, c.id, d.id, failed.id, markup.id], "markup": markup.id, "killed": killed.id,
            "best": d.id, "failed": failed.id, "bad": bad, "chain": [a.id, b.id, d.id]}


def tree_digest(root: Path) -> str:
    """sha256 over every path, file type, and file content under ``root`` (symlinks not followed)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            h.update(str(p.relative_to(root)).encode() + b"\0")
            if p.is_symlink():
                h.update(b"L" + os.readlink(p).encode())
            elif p.is_file():
                h.update(b"F" + p.read_bytes())
            else:
                h.update(b"D")
    return h.hexdigest()
