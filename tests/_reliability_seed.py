"""Committed individuals published straight through the store (no training), so that a
reliability test can check afterwards that nothing committed was lost or changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lse.core.records import IndividualRecord, new_id
from lse.store import Store


def seed_individuals(pop: Path, n: int, acc0: float = 0.3) -> dict[str, str]:
    """Publish ``n`` initial individuals whose weights fit their DNA; return id -> sha256 of
    the individual's files (what must survive untouched)."""
    import torch

    from lse.nn.build import build_model
    from lse.core.dna import initial_dna

    store = Store(pop).open()
    store.register_worker("seeder", auto_heartbeat=False)
    out = {}
    try:
        for i in range(n):
            dna = initial_dna(0.1, input_channels=1)
            torch.manual_seed(i)
            model = build_model(dna, (1, 12, 12), 10)
            rec = IndividualRecord(id=new_id(), dna=dna.model_dump(mode="json"), val_accuracy=acc0 + 0.01 * i,
                                   steps=5, examples=100, extra={"seeded": True})  # untrained: accuracy made up
            e = store.publish(rec, model.state_dict())
            out[e.id] = digest(e.path)
    finally:
        store.close()
    return out


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
