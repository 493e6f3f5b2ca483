"""Warm starts: begin an experiment from a known architecture, or from another experiment.

* ``--initial-dna FILE`` (:func:`read_dna_file`): every initial individual is this DNA (a
  hand-designed net written as DNA, or the ``dna`` of any individual's record.json) instead of
  section 3.3's trivial model.  Saved in experiment.json (``initial_dna``).
* ``--seed-from POP`` (:func:`seed_from`): the alive individuals of another population, weights
  included, are copied into a NEW experiment before its workers start (the fittest first, at
  most ``population_size``).  Each copy gets a new id, is re-evaluated on THIS experiment's
  validation split (the fitness of another experiment means nothing here) and records where it
  came from (``extra.seeded_from``).  They count as the initial population; if there are fewer
  than ``population_size``, the workers add initial individuals as usual.  Paper 001 starts
  from a trained network; users want to start from a net they know.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

from lse.config import ExperimentConfig
from lse.core.dna import DNA
from lse.core.records import IndividualRecord, new_id
from lse.errors import ConfigError, DNAError, LostRace, StoreError
from lse.store import Store

Echo = Callable[[str], None]


def read_dna_file(path: str | os.PathLike) -> dict:
    """The DNA in ``path``: a DNA's JSON, or a record.json holding one under ``dna``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"--initial-dna {p}: {os.strerror(e.errno or 0)}", "give the path of a DNA JSON file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--initial-dna {p} is not JSON ({e.msg} at line {e.lineno})",
                          "give a DNA as `lse pop show ID --json` prints it, or a record.json") from None
    if isinstance(data, dict) and isinstance(data.get("dna"), dict):
        data = data["dna"]
    try:
        return DNA.model_validate(data).model_dump(mode="json")
    except DNAError as e:
        raise ConfigError(f"--initial-dna {p}: {e}", "fix the DNA (see lse.core.dna) or take one from a record.json") from None


def seed_from(store: Store, source: str | os.PathLike, config: ExperimentConfig, echo: Echo = print) -> int:
    """Copy the fittest alive individuals of ``source`` into the new experiment ``store`` (its
    workers not started yet); return how many were published."""
    import torch

    from lse.nn.build import build_model
    from lse.nn.data import load_dataset
    from lse.nn.flops import count_flops
    from lse.nn.train import evaluate

    try:
        src = Store(source).open()
        alive = sorted(src.list_alive(), key=lambda e: -(e.fitness if e.fitness is not None else -math.inf))
    except StoreError as e:
        raise ConfigError(f"--seed-from {source}: {e}", "give the folder of an existing population") from None
    if not alive:
        raise ConfigError(f"--seed-from {source}: no alive individual there", "seed from a population that has some")
    ds = load_dataset(config.dataset, config.data_dir, validation_size=config.validation_size, seed=config.seed,
                      image=config.image_options())
    handle = store.register_worker(None, auto_heartbeat=False)
    published = 0
    try:
        for entry in alive:
            if published >= config.population_size:
                break
            try:
                rec, state = src.read_parent(entry)
            except LostRace:
                continue  # killed meanwhile, or malformed (quarantined there): take the next
            dna = DNA.model_validate(rec.dna)
            try:
                model = build_model(dna, ds.input_shape, ds.num_classes)
                missing = model.load_state_dict(state, strict=False)
            except (RuntimeError, ValueError) as e:  # another data set's shapes
                echo(f"seed {entry.id}: its weights do not fit {config.dataset} ({str(e).splitlines()[0]}); skipped")
                continue
            acc = evaluate(model, ds.val_x, ds.val_y, config.eval_batch_size, dataset=ds)
            fc = count_flops(dna, ds.input_shape, ds.num_classes, config.batch_size, config.eval_batch_size)
            n_eval = math.ceil(ds.val_x.shape[0] / config.eval_batch_size)
            copy = IndividualRecord(
                id=new_id(), dna=rec.dna, algorithm=config.algorithm.name, val_accuracy=acc,
                objectives={"val_accuracy": acc}, fitness=acc, params=rec.params,
                flops=fc.record(0, n_eval),
                worker=handle.id,
                extra={"seeded_from": f"{src.root}:{entry.id}", "source_fitness": entry.fitness,
                       "missing_tensors": len(missing.missing_keys)},
            )
            store.publish(copy, {k: v.detach().cpu() for k, v in model.state_dict().items()})
            published += 1
            echo(f"seeded {copy.id} from {entry.id}: val accuracy here {acc:.4f} (there: {entry.fitness})")
    finally:
        handle.close()
    del torch
    return published
