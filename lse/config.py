"""Typed configuration of an experiment, saved as ``experiment.json`` in the population.

One pydantic model per concern (STYLE.md 6):

* :class:`ExperimentConfig` -- what defines the experiment (data, training, selection,
  mutation probabilities) and when every worker stops.  Written once into the population and
  read by every worker, so an experiment is reproducible from its own files.
* :class:`WorkerOptions` -- how one worker process runs (device, threads): machine-specific,
  never part of the experiment's identity.

Every field says its meaning and unit.  Invalid values raise :class:`lse.errors.ConfigError`
with a message naming the field and the valid choices.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lse.algorithms.base import AlgorithmSpec
from lse.core.datasets import STANDARD

from lse.errors import ConfigError

#: Version of the experiment.json schema this code writes.  A file with a higher version was
#: written by a newer lse and is refused rather than misread.
CONFIG_SCHEMA_VERSION = 2
# Version 2 added ``algorithm``, ``initial_dna``, ``flip`` and ``insert_channels``.  A version-1
# file reads as it ran: the paper's algorithm, trivial initial individuals, no inserted-width
# draw, and the mirroring schema 1 did (CIFAR only).

DATASETS = tuple(STANDARD)

#: Whether augmentation mirrors images left-right when ``flip`` is not given (lse.core.datasets); a
#: user's own images (folder, npz) are not mirrored unless asked.
DEFAULT_FLIP = {**{d.name: d.flip for d in STANDARD.values()}, "folder": False, "npz": False}
#: What schema 1 (no ``flip`` field) did: CIFAR only.
_SCHEMA1_FLIP = {d.name: d.flip_schema1 for d in STANDARD.values()}

#: Fields that may differ when an experiment is resumed: they bound the run, they do not
#: change what is being searched.
STOP_FIELDS = frozenset({"max_individuals", "max_hours", "max_flops", "finish_minutes"})

#: Settings a running experiment may change (paper section 5: a period of increased mutation
#: rate frees a trapped population).  Workers re-read them every step, like the stop fields,
#: and a resume may change them; every change is also recorded in events/ (lse.store.events).
LIVE_FIELDS = frozenset({"mutations_per_child"})


#: Named configurations (``lse launch --preset NAME``): values for ExperimentConfig fields the
#: user does not give.  They are saved in experiment.json as the plain fields they set (the
#: name is not), so resume rules and reproducibility are those of any other option.
#: ``paper``: the paper's algorithm, unchanged (the default).
#: ``quick``: for a few minutes on a laptop (the earlier quick start); what it changes and why is
#: in docs/OPTIONS.md's preset table.
#: ``hour``: for an hour on one machine (issue 19, docs/SEARCH.md): wider inserted convolutions,
#: 500 steps per child and more later in the run (a step schedule: the structure is found with
#: short children, the late ones train long enough to anneal), inheritance as a network
#: morphism (so a grown child does not start behind its parent), a cosine learning-rate decay
#: within each child (so it is evaluated after annealing, not in the noise of a large step), and
#: mutation weights that favour growing the network over the identity layers and weight resets
#: that filled the quick start's populations.  It also bounds what one child may cost (issue 30,
#: docs/search-robust/): a child trains at most 6e12 training FLOPs' worth of its steps (about
#: 170 s on one core of the 2-core development machine), and a network that could not train the
#: schedule's first 500 steps within that (over 1.2e10 FLOPs per batch) is refused, so no lineage
#: grows past what the hour can train.  For an hour, add ``--finish 10``: the last 10 minutes
#: retrain the best by validation as the final model (a stop field, so not in the preset).
_GROWTH_WEIGHTED = {
    "insert_convolution": 3, "alter_channels": 2, "alter_stride": 2, "filter_size": 1,
    "alter_learning_rate": 1, "identity": 1, "remove_convolution": 1, "add_skip": 0.5, "remove_skip": 0.5,
    "insert_one_to_one": 0.25, "reset_weights": 0.25,
}
#: ``gpu``: the ``hour`` preset's ideas for 10 minutes on one GPU with several workers (issue 27,
#: docs/GPU.md): a larger population for the larger number of workers, and children 2-8x longer,
#: since a GPU trains them 10-100x faster than 2 CPU cores; no per-child budget (measured without,
#: and a GPU's FLOPs per second make the CPU's bound meaningless).
_HOUR_SEARCH = {
    "insert_channels": [16, 32, 64],
    "steps": 500,
    "steps_schedule": [(15, 1000), (25, 2000)],
    "population_size": 10,
    "morph": True,
    "lr_schedule": "cosine",
    "mutation_probabilities": _GROWTH_WEIGHTED,
}
PRESETS: dict[str, dict] = {
    "paper": {},
    "quick": {"insert_channels": [8, 16, 32]},
    "hour": {**_HOUR_SEARCH, "child_flops": 6e12, "min_child_steps": 500},
    "gpu": {**_HOUR_SEARCH, "steps": 1000, "steps_schedule": [(3, 2000), (6, 4000)], "population_size": 32},
}


def apply_preset(name: str, given: dict) -> dict:
    """``given`` (the options the user passed) over preset ``name``'s values."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", f"valid presets: {', '.join(PRESETS)}")
    return {**PRESETS[name], **given}


class _Validated(BaseModel):
    """A model whose ``parse`` turns pydantic's errors into one ConfigError line."""

    @classmethod
    def parse(cls, data: object, source: str = "options"):
        """Validate ``data``; raise ConfigError naming the first bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"{source}: {_first_error(e)}", "fix the value and try again") from None


class ExperimentConfig(_Validated):
    """Everything that defines one evolution experiment (paper section 3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(CONFIG_SCHEMA_VERSION, description="experiment.json schema version")

    # --- data (section 3.4) ---
    dataset: Literal["fashion-mnist", "mnist", "cifar10", "cifar100", "encoded", "folder", "npz"] = Field(
        "fashion-mnist", description="data set name; folder / npz: the user's own images at data_dir (docs/OWNDATA.md)"
    )
    image_size: tuple[int, int] | None = Field(
        None, description="folder/npz: resize every image to (H, W); None: the images' common size"
    )
    channels: Literal[1, 3] | None = Field(None, description="folder/npz: force grey (1) or colour (3); None: as found")
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="folder/npz without a test set: stratified fraction held out as the test set"
    )
    skip_bad_images: bool = Field(False, description="folder: leave unreadable images out instead of refusing the folder")
    data_dir: str | None = Field(
        None, description="folder holding the data set's standard files; None: $LSE_DATA, then system folders"
    )
    validation_size: int = Field(5000, ge=10, description="examples held out of the training set for fitness")
    augment: bool = Field(True, description="He et al. 2016 augmentation (pad 4 + random crop, and flip)")
    flip: bool | None = Field(
        None, description="augmentation mirrors half the images left-right; None: the data set's default "
        "(DEFAULT_FLIP: fashion-mnist and CIFAR yes, mnist no), written out as true/false"
    )

    # --- population (section 3.1) ---
    population_size: int = Field(40, ge=2, description="alive individuals the workers maintain (paper: 1000)")
    algorithm: AlgorithmSpec = Field(
        default_factory=AlgorithmSpec, description="the algorithm (lse algorithms) and its typed options"
    )
    selection: Literal["tournament", "random"] = Field(
        "tournament", description="tournament: the algorithm's selection; random: the random-search control (fitness ignored)"
    )
    inheritance: bool = Field(True, description="children inherit the parent's weights (section 3.6)")
    morph: bool = Field(
        False, description="inheritance keeps the parent's function where it can (network morphism, not the paper): "
        "a tensor whose shape changed keeps its overlap, new fan-in starts at zero, an inserted convolution "
        "starts as the identity; False: the paper's section 3.6 (re-initialise what changed shape)"
    )
    mutation_probabilities: dict[str, float] | None = Field(
        None, description="relative weight per mutation name; None: uniform over the 11 of section 3.2"
    )
    seed: int = Field(0, description="experiment seed: fixes the validation split; workers derive their own")
    initial_dna: dict | None = Field(
        None, description="DNA (JSON) of every initial individual (--initial-dna); None: section 3.3's trivial model"
    )
    insert_channels: list[int] | None = Field(
        None, description="output channels of an inserted convolution, drawn uniformly from this list; "
        "None: as many as its input (the paper, section 3.2)"
    )

    # --- training (section 3.4) ---
    steps: int = Field(25_600, ge=1, description="SGD steps per individual")
    steps_schedule: list[tuple[float, int]] | None = Field(
        None, description="[[MINUTE, STEPS], ...]: a child whose training starts at or after MINUTE of the "
        "experiment trains STEPS steps (the latest such pair wins; before the first, ``steps``); "
        "None: every child trains ``steps`` (the paper)"
    )
    child_flops: float | None = Field(
        None, gt=0, description="training FLOPs one child may spend: it trains min(steps, child_flops / its "
        "training FLOPs per batch) steps, and one that could not train min_child_steps within it is refused "
        "untrained (not the paper; lse.core.budget); None: every child trains its steps (the paper)")
    min_child_steps: int = Field(50, ge=1, description="with child_flops: the fewest steps worth training a child")
    batch_size: int = Field(50, ge=1, description="training examples per step")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(1e-4, ge=0.0, description="L2 weight decay")
    initial_learning_rate: float = Field(0.1, gt=0.0, description="learning rate of initial individuals (section 3.3)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning rate within one child's training: constant (section 3.4) or cosine: "
        "from the individual's learning rate down to 0 over its steps (not the paper)"
    )
    eval_batch_size: int = Field(1000, ge=1, description="examples per validation batch (no grad)")

    # --- live settings (section 5; may change on resume and while the run goes on) ---
    mutations_per_child: int = Field(
        1, ge=1, le=100, description="mutations applied to each child (paper: 1); events/ may override it for a while"
    )

    # --- stop conditions (every worker obeys; may change on resume) ---
    max_individuals: int | None = Field(None, ge=1, description="stop after this many births (trained individuals)")
    max_hours: float | None = Field(None, gt=0, description="stop this many hours after the experiment was created")
    max_flops: float | None = Field(None, gt=0, description="stop when the experiment's FLOPs (section 3.5) exceed this")
    finish_minutes: float | None = Field(
        None, gt=0, description="the last this-many minutes of max_hours retrain the best by validation as the final "
        "model (lse retrain, inside the hours; the local launcher runs it): evolution stops that much earlier")

    @property
    def evolve_hours(self) -> float | None:
        """When evolution stops, in hours after the creation: max_hours less finish_minutes."""
        if self.max_hours is None:
            return None
        return self.max_hours - (self.finish_minutes or 0.0) / 60.0

    @model_validator(mode="after")
    def _finish_within_hours(self) -> "ExperimentConfig":
        if self.finish_minutes is not None:
            if self.max_hours is None:
                raise ValueError("finish_minutes needs max_hours: the finish is the end of the hours (give --max-hours)")
            if self.finish_minutes >= self.max_hours * 60:
                raise ValueError(f"finish_minutes={self.finish_minutes:g} leaves no time to evolve within "
                                 f"max_hours={self.max_hours:g} ({self.max_hours * 60:g} minutes); give fewer minutes")
        return self

    @model_validator(mode="before")
    @classmethod
    def _resolve_flip(cls, data: object) -> object:
        """``flip`` None -> the data set's default, so experiment.json records what was done.
        A schema-1 file (before the field existed) gets what schema 1 did."""
        if isinstance(data, dict) and data.get("flip") is None:
            dataset = data.get("dataset", "fashion-mnist")
            version = data.get("schema_version", CONFIG_SCHEMA_VERSION)
            table = _SCHEMA1_FLIP if isinstance(version, int) and version < 2 else DEFAULT_FLIP
            if dataset in table:  # an unknown name is reported by the field's own check
                data = {**data, "flip": table[dataset]}
        return data

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > CONFIG_SCHEMA_VERSION:
            raise ValueError(
                f"written by a newer lse (schema {v}, this lse reads up to {CONFIG_SCHEMA_VERSION}); upgrade lse"
            )
        return v

    @field_validator("insert_channels")
    @classmethod
    def _positive_channels(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(c < 1 for c in v)):
            raise ValueError("a non-empty list of channel counts >= 1, or null")
        return v

    @field_validator("steps_schedule")
    @classmethod
    def _increasing_schedule(cls, v: list[tuple[float, int]] | None) -> list[tuple[float, int]] | None:
        if v is None:
            return v
        minutes = [m for m, _ in v]
        if not v or any(m < 0 for m in minutes) or any(a >= b for a, b in zip(minutes, minutes[1:])):
            raise ValueError("a non-empty list of [minute, steps] with minutes >= 0 and increasing, or null")
        if any(n < 1 for _, n in v):
            raise ValueError("steps in every [minute, steps] must be >= 1")
        return v

    def steps_at(self, minutes: float) -> int:
        """SGD steps of a child whose training starts ``minutes`` after the experiment began."""
        steps = self.steps
        for start, n in self.steps_schedule or ():
            if minutes >= start:
                steps = n
        return steps

    @field_validator("mutation_probabilities")
    @classmethod
    def _known_mutations(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        from lse.core.mutations import MUTATION_NAMES  # pure module; lazy to keep import order simple

        unknown = sorted(set(v) - set(MUTATION_NAMES))
        if unknown:
            raise ValueError(f"unknown mutation(s) {unknown}; valid: {', '.join(MUTATION_NAMES)}")
        if any(p < 0 for p in v.values()) or sum(v.values()) <= 0:
            raise ValueError("probabilities must be >= 0 with a positive sum")
        return v

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: AlgorithmSpec) -> AlgorithmSpec:
        from lse.algorithms import algorithm_class

        algo = algorithm_class(v.name)
        try:
            options = algo.Options.model_validate(v.options)
        except ValidationError as e:
            raise ValueError(f"{v.name} option {_first_error(e)}") from None
        # Saved with every default filled in: a later default change cannot alter a resumed run.
        return AlgorithmSpec(name=v.name, options=options.model_dump(mode="json"))

    @field_validator("initial_dna")
    @classmethod
    def _valid_dna(cls, v: dict | None) -> dict | None:
        if v is None:
            return v
        from lse.core.dna import DNA
        from lse.errors import DNAError

        try:
            return DNA.model_validate(v).model_dump(mode="json")
        except (ValidationError, DNAError) as e:
            raise ValueError(f"not a valid DNA: {str(e).splitlines()[0]}") from None

    @model_validator(mode="after")
    def _control_supported(self) -> "ExperimentConfig":
        from lse.algorithms import algorithm_class

        if self.selection == "random" and not algorithm_class(self.algorithm.name).random_control:
            raise ValueError(f"algorithm {self.algorithm.name} has no random-search control; use selection tournament")
        return self

    # --- identity and persistence ---
    def image_options(self) -> dict:
        """How a user's own images are read (lse.nn.images.ImageOptions fields)."""
        return {"image_size": self.image_size, "channels": self.channels, "test_fraction": self.test_fraction,
                "skip_bad": self.skip_bad_images}

    def identity(self) -> dict:
        """The fields that must match for a launch to resume this experiment."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in STOP_FIELDS | LIVE_FIELDS}

    def differences(self, other: "ExperimentConfig") -> list[str]:
        """Human-readable list of identity fields where ``other`` differs from ``self``."""
        a, b = self.identity(), other.identity()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a) if a[k] != b.get(k)]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "experiment.json") -> "ExperimentConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{source} is not valid JSON ({e.msg} at line {e.lineno})",
                "restore it from a backup or re-create the experiment with `lse launch --force`",
            ) from None
        return cls.parse(data, source)


class WorkerOptions(_Validated):
    """How one worker process runs; not part of the experiment's identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu")
    gpu_index: int | None = Field(None, ge=0, description="CUDA device index (the launcher assigns round robin)")
    threads: int = Field(1, ge=1, description="torch intra-op threads; size to this worker's share of cores")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="CUDA arithmetic: bf16 autocast or fp32 (TF32); auto: lse.nn.train.DEFAULT_CUDA_BF16")
    cuda_graph: bool = Field(True, description="CUDA: replay each child's training step from a CUDA graph")
    heartbeat_seconds: float = Field(5.0, gt=0, description="how often the worker refreshes its heartbeat")
    stale_after_seconds: float = Field(
        120.0, gt=0, description="a heartbeat unchanged this long (on the reader's clock) marks a worker dead"
    )


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "value"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg} (got {err.get('input')!r})"
