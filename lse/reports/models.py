"""A population's trained models, as ``lse.load``, ``lse export``, ``lse predict`` and ``lse retrain``
take them: which individuals (``best``, ``ensemble``, an id, ``retrained:<id>-<n>``), their
weights and their preprocessing (lse.nn.export builds the modules).  Read-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lse.core.records import is_id
from lse.errors import ConfigError
from lse.nn.export import Ensemble, Loaded, Preprocess
from lse.store import saferead

#: final models of ``lse retrain``, beside the population (never under individuals/)
RETRAINED = "retrained"
RESULT = "result.json"
WEIGHTS = "weights.safetensors"


class DataInfo(BaseModel):
    """POP/classes.json as ``lse launch`` writes it (lse.runners.launch), bounded: anyone with
    write access to the population can replace it."""

    model_config = ConfigDict(extra="ignore")
    classes: list[Annotated[str, StringConstraints(max_length=1000)]] = Field(min_length=2, max_length=100_000)
    input_shape: list[Annotated[int, Field(ge=1, le=1 << 16)]] = Field(min_length=3, max_length=3)
    mean: list[Annotated[float, Field(allow_inf_nan=False)]]
    std: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]]

    @model_validator(mode="after")
    def _per_channel(self) -> "DataInfo":
        if not len(self.mean) == len(self.std) == self.input_shape[0]:
            raise ValueError("mean and std need one value per channel")
        return self


def data_info(pop: Path, cfg) -> dict:
    """classes, input_shape, mean, std: from POP/classes.json, else from the data set.  A
    classes.json that is not what lse writes (a link, a FIFO, a giant, garbage, numbers out of
    range) is ignored: the data set says the same."""
    try:
        return DataInfo.model_validate(saferead.read_json(pop / "classes.json", "classes")).model_dump()
    except (OSError, ValueError, saferead.UnsafeFile):  # pydantic's ValidationError is a ValueError
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
    store = Store(pop, read_only=True).open()
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
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = pop / RETRAINED / name
    try:
        if not _real_folder(folder):
            raise saferead.UnsafeFile(f"{folder} is not a folder")
        result = RetrainedResult.model_validate(saferead.read_json(folder / RESULT, "eval")).model_dump()
        state = load(saferead.read_bytes(folder / WEIGHTS, "weights"))
    except (OSError, ValueError, saferead.UnsafeFile, SafetensorError) as e:
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
            if not _real_folder(d):
                continue  # a link could lead out of the population
            r = RetrainedResult.model_validate(saferead.read_json(d / RESULT, "eval"))  # no FIFO, giant or link out
        except (OSError, ValueError, saferead.UnsafeFile):
            continue
        out.append({**r.model_dump(), "name": d.name})
    return sorted(out, key=lambda r: (r["finished_at"], r["name"]))


class RetrainedResult(BaseModel):
    """What a report shows of POP/retrained/<id>-<n>/result.json (lse.runners.retrain writes it),
    bounded like every file read from a population; the rest of the file is kept as it is."""

    model_config = ConfigDict(extra="allow")
    id: str
    from_: Literal["scratch", "weights"] = Field(alias="from")
    steps: int = Field(ge=0, le=10**12)
    train_seconds: float = Field(ge=0, le=1e9, allow_inf_nan=False)
    val_accuracy: float | None = Field(ge=0, le=1, allow_inf_nan=False)
    test_accuracy: float | None = Field(ge=0, le=1, allow_inf_nan=False)
    flops: float = Field(ge=0, le=1e30, allow_inf_nan=False)
    finished_at: float = Field(ge=0, le=1e11, allow_inf_nan=False)

    @model_validator(mode="after")
    def _an_id(self) -> "RetrainedResult":
        if not is_id(self.id):
            raise ValueError(f"{self.id[:100]!r} is not an individual id")
        return self

    def model_dump(self, **kw) -> dict:  # type: ignore[override]
        return super().model_dump(by_alias=True, **kw)


def _real_folder(path: Path) -> bool:
    """A folder, not a link to one (a link could lead out of the population)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
