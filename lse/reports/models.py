"""A population's trained models, as ``lse.load``, ``lse export``, ``lse predict`` and ``lse retrain``
take them: which individuals (``best``, ``ensemble``, an id, ``retrained:<id>-<n>``), their
weights and their preprocessing (lse.nn.export builds the modules).  Read-only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lse.errors import ConfigError
from lse.nn.export import Ensemble, Loaded, Preprocess
from lse.store import saferead

#: final models of ``lse retrain``, beside the population (never under individuals/)
RETRAINED = "retrained"
RESULT = "result.json"
WEIGHTS = "weights.safetensors"


def data_info(pop: Path, cfg) -> dict:
    """classes, input_shape, mean, std: from POP/classes.json, else from the data set."""
    try:
        info = json.loads((pop / "classes.json").read_text())
        if all(k in info for k in ("classes", "input_shape", "mean", "std")):
            return info
    except (OSError, ValueError):
        pass
    from lse.nn.data import load_dataset

    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed,
                      image=cfg.image_options(), flip=cfg.flip)
    return {"classes": list(ds.classes), "input_shape": list(ds.input_shape), "mean": list(ds.mean),
            "std": list(ds.std)}


def pick(store, which: str) -> list:
    """The records ``which`` names (see the module docstring), best first; only with weights."""
    from lse.reports import curves as cv

    records = store.records()
    by_id = {r.id: r for r in records}
    if which in ("best", "ensemble"):
        size = 1 if which == "best" else 2
        out = []
        for ind in cv.top_by_validation([cv.from_record(r) for r in records], len(records)):
            if len(out) == size:
                break
            if store.load_weights(ind.id) is not None:
                out.append(by_id[ind.id])
        if len(out) < size:
            raise ConfigError(f"{store.root}: {len(out)} trained individual(s) with weights, {which} needs {size}",
                              "let the workers run longer (lse launch), then export again")
        return out
    matches = [r for r in records if r.id == which] or [r for r in records if r.id.startswith(which)]
    if len(matches) != 1:
        raise ConfigError(f"{store.root}: {'no' if not matches else len(matches)} individual(s) match {which!r}",
                          "give best, ensemble, or an individual id from `lse pop ls`")
    if store.load_weights(matches[0].id) is None:
        raise ConfigError(f"{store.root}: the weights of {matches[0].id} were collected", "export best or ensemble")
    return matches


def load(pop: str | os.PathLike, which: str = "best", device: str = "cpu") -> Loaded:
    """The trained model(s) ``which`` of population ``pop``, in eval mode, with preprocessing."""
    from lse.nn.genomes import build
    from lse.store.population import Store

    pop = Path(pop)
    store = Store(pop).open()
    info = data_info(pop, store.config)
    shape = tuple(int(s) for s in info["input_shape"])
    models = []
    if which.startswith("retrained:"):  # a final model of `lse retrain`: POP/retrained/<id>-<n>/
        chosen, state = _retrained(pop, store, which.split(":", 1)[1])
        states = [state]
    else:
        chosen = pick(store, which)
        states = [store.load_weights(rec.id) for rec in chosen]
    for rec, state in zip(chosen, states):
        m = build(rec.genome, rec.dna, shape, len(info["classes"]))
        m.load_state_dict(state, strict=True)
        models.append(m.to(device).eval())
    model = models[0] if len(models) == 1 else Ensemble(models).eval()
    return Loaded(model, Preprocess(info["mean"], info["std"]).to(device), tuple(info["classes"]), shape,  # type: ignore[arg-type]
                  tuple(r.id for r in chosen), str(pop.resolve()), {r.id: r.val_accuracy for r in chosen})


def _retrained(pop: Path, store, name: str):
    from safetensors.torch import load_file

    folder = pop / RETRAINED / name
    try:
        result = json.loads((folder / RESULT).read_text())
        state = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{folder}: no usable retrained model ({type(e).__name__})",
                          "see `lse report` for the retrained models of this population") from None
    rec = next((r for r in store.records() if r.id == result.get("id")), None)
    if rec is None:
        raise ConfigError(f"{folder}: individual {result.get('id')} is not in the population", "retrain it again")
    return [rec], state


# ---------------------------------------------------------------------------------------------
# Writing and reading standalone files


def retrained_results(pop: str | os.PathLike) -> list[dict]:
    """Every published retraining of ``pop`` (result.json contents plus ``name``), oldest first."""
    root = Path(pop) / RETRAINED
    out = []
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return []
    for d in entries:
        try:
            r = saferead.read_json(d / RESULT, "eval")  # never a FIFO, a giant or a link out
        except (OSError, ValueError, saferead.UnsafeFile):
            continue
        if isinstance(r, dict):
            out.append({**r, "name": d.name})
    return sorted(out, key=lambda r: (r.get("finished_at", 0), r["name"]))
