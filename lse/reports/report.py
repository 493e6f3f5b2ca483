"""``lse report``: progress curves, Figure 1, the summary table, ensembles and the HTML page.

What is computed where:

* :mod:`lse.reports.curves` -- the arithmetic (pure): Figure 2's curve, repeat bands, lineage,
  mutation statistics, the majority vote.
* :mod:`lse.reports.figures` -- the drawing (matplotlib, Agg).
* here -- the I/O: read each population, compute the test accuracies the report needs, write
  the files of ``OUT`` and print the terminal summary.

Test accuracy (section 3.7).  Selection never sees the test set; the report computes the test
accuracy of exactly the individuals it shows -- every individual that was the best-so-far by
validation accuracy (the curve) and the ensemble's members -- by building the model from the
record's DNA, loading its weights from the store and evaluating on the data set's test split.
Results are cached in ``POP/eval/<id>.json`` (keyed by a fingerprint of the test set), a
folder no worker reads.  An individual whose weights were garbage-collected has no test
accuracy: it is reported as missing (NaN) and the curve carries the last known value, saying
so in its legend.

Ensemble (section 3.4): majority vote of the top-2 individuals by validation accuracy, on
their real test-set predictions (:func:`lse.nn.train.predict`).  With two voters a vote is a tie
whenever they disagree; the tie goes to the class with the higher summed softmax probability
of the two models.  Members whose weights are gone are replaced by the next by validation.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import math
import os
import re
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lse.reports import curves as cv
from lse.errors import ConfigError, DataError, LseError, StoreError
from lse.store.atomic import write_json_atomic

log = logging.getLogger("lse.reports.report")

ENSEMBLE_SIZE = 2
#: Individuals drawn under Figure 1: the best and three ancestors, as in the paper.
ARCHITECTURES_DRAWN = 4


# ---------------------------------------------------------------------------------------------
# Reading a population


@dataclass
class Experiment:
    """One population directory, read once."""

    pop: Path
    label: str
    config: object  # ExperimentConfig
    records: list  # IndividualRecord, every individual that ever lived
    inds: list[cv.Individual]
    start: float  # unix s, time zero of its curves
    test: dict[str, float | None] = field(default_factory=dict)  # id -> test accuracy (None: no weights)
    curve: cv.Curve | None = None
    summary: dict = field(default_factory=dict)
    num_classes: int | None = None
    events: list = field(default_factory=list)  # section 5: lse.core.events.Event, in id order
    references: list = field(default_factory=list)  # lse.core.reference.ReferenceCurve: hand-designed anchors
    until_flops: float | None = None  # read up to this much compute (equal-compute comparisons)
    cut: int = 0  # individuals born after the experiment's FLOPs passed until_flops, left out

    @property
    def by_id(self) -> dict:
        return {r.id: r for r in self.records}


def _store(pop: Path):
    from lse.store.population import Store

    return Store(pop, read_only=True).open()


def created_at(store, pop: Path) -> float | None:
    """When the experiment was created (lse.store.clock); None when that cannot be read."""
    from lse.store import clock

    try:
        return clock.created_at(store)
    except OSError:
        return None


def within_flops(inds: list, until_flops: float | None) -> int:
    """How many of ``inds`` (in birth order) were born before the experiment's FLOPs (section
    3.5, summed in birth order) passed ``until_flops``: an experiment that overshot its budget
    is read as if it had stopped there."""
    if until_flops is None:
        return len(inds)
    spent = 0.0
    for k, ind in enumerate(inds):
        spent += ind.flops
        if spent > until_flops:
            return k
    return len(inds)


def load_experiment(pop: str | os.PathLike, label: str | None = None, until_flops: float | None = None) -> Experiment:
    """Read the configuration and every record of one population (with ``until_flops``: the
    individuals born within that compute)."""
    pop = Path(pop)
    store = _store(pop)  # StoreError saying what to do when pop is not a population
    records = store.records()
    inds = [cv.from_record(r) for r in records]
    order = sorted(range(len(records)), key=lambda k: (inds[k].born_at, inds[k].id))  # birth order
    records, inds = [records[k] for k in order], [inds[k] for k in order]
    keep = within_flops(inds, until_flops)
    cut = len(inds) - keep
    records, inds = records[:keep], inds[:keep]
    start = cv.experiment_start(inds, created_at(store, pop))
    from lse.store.events import EventLog
    from lse.store.references import read_references

    return Experiment(pop=pop, label=label or pop.name, config=store.config, records=records, inds=inds, start=start,
                      events=EventLog(store).read(), references=read_references(pop), until_flops=until_flops, cut=cut)


# ---------------------------------------------------------------------------------------------
# Test accuracy, from the real weights


def load_weights(pop: Path, individual_id: str):
    """The state_dict of an individual, or None when its weights are gone.

    The store finds them wherever they are (alive, dead, or kept in history/ by GC, which
    keeps the record holders' and the top-2's weights for reports).  Corrupt weights count as
    gone: a report shows what it can rather than stopping."""
    from lse.store.population import Store

    try:
        return Store(pop, read_only=True).load_weights(individual_id)
    except LseError as e:
        log.warning("weights of %s unusable: %s", individual_id, e)
        return None


def test_fingerprint(dataset) -> str:
    """sha256 of the test set's images and labels: a cached accuracy is reused only for the
    very same test set."""
    h = hashlib.sha256()
    h.update(repr((dataset.name, tuple(dataset.test_x.shape))).encode())
    h.update(dataset.test_x.cpu().numpy().tobytes())
    h.update(dataset.test_y.cpu().numpy().astype("<i8").tobytes())
    return h.hexdigest()


def _eval_path(pop: Path, individual_id: str) -> Path:
    from lse.store.population import PopulationPaths

    return PopulationPaths(pop).eval_record(individual_id)


class Evaluator:
    """Builds models from records and evaluates them on one data set's test split."""

    def __init__(self, dataset, batch_size: int = 1000, device: str = "cpu") -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.fingerprint = test_fingerprint(dataset)
        self._warned_cache = False

    def model(self, pop: Path, record):
        """The trained model of ``record`` in eval mode, or None when its weights are gone."""
        from lse.nn.genomes import build

        state = load_weights(pop, record.id)
        if state is None:
            return None
        model = build(record.genome, record.dna, tuple(self.dataset.input_shape), self.dataset.num_classes)
        model.load_state_dict(state, strict=True)
        return model.to(self.device).eval()

    def cached(self, pop: Path, individual_id: str) -> float | None:
        from lse.errors import CorruptIndividual
        from lse.store.saferead import read_json

        try:  # the one safe read: no FIFO, no symlink, no giant, bounded nesting
            data = read_json(_eval_path(pop, individual_id), "eval")
        except (OSError, ValueError, CorruptIndividual):
            return None  # not cached (or not trusted): computed again, and the cache rewritten
        if not isinstance(data, dict) or data.get("test_fingerprint") != self.fingerprint:
            return None
        acc = data.get("test_accuracy")
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            return None
        return float(acc)

    def test_accuracy(self, pop: Path, record) -> float | None:
        """Cached, or computed now and cached; None when the weights were collected."""
        acc = self.cached(pop, record.id)
        if acc is not None:
            return acc
        model = self.model(pop, record)
        if model is None:
            return None
        from lse.nn.train import evaluate

        acc = float(evaluate(model, self.dataset.test_x, self.dataset.test_y, self.batch_size))
        try:
            write_json_atomic(_eval_path(pop, record.id), {
                "id": record.id, "test_accuracy": acc, "test_fingerprint": self.fingerprint,
                "dataset": self.dataset.record(), "computed_at": time.time(),
            }, fix="make the population writable to cache them", indent=2, sort_keys=True)
        except StoreError as e:  # a read-only or full population: the report goes on uncached
            if not self._warned_cache:
                log.warning("test accuracies are not cached (%s); the report still draws them", e.message)
                self._warned_cache = True
        return acc

    def predictions(self, pop: Path, record) -> tuple[np.ndarray, np.ndarray] | None:
        """(labels (n,), softmax probabilities (n, C)) on the test split, or None."""
        import torch

        from lse.nn.train import predict

        model = self.model(pop, record)
        if model is None:
            return None
        x = self.dataset.test_x
        labels = predict(model, x, self.batch_size).cpu().numpy()
        scale, shift = self.dataset.normalization(x.device)
        probs = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                xb = x[i:i + self.batch_size].float() * scale + shift
                probs.append(torch.softmax(model(xb).float(), dim=1).cpu())
        return labels, torch.cat(probs).numpy()


def ensemble(exp: Experiment, ev: Evaluator, size: int = ENSEMBLE_SIZE) -> dict:
    """Majority vote of the top-``size`` by validation accuracy that still have weights."""
    by_id = exp.by_id
    members, skipped, votes, probs = [], [], [], []
    for ind in cv.top_by_validation(exp.inds, len(exp.inds)):
        if len(members) == size:
            break
        pred = ev.predictions(exp.pop, by_id[ind.id])
        if pred is None:
            skipped.append(ind.id)
            continue
        members.append(ind.id)
        votes.append(pred[0])
        probs.append(pred[1])
    y = ev.dataset.test_y.cpu().numpy()
    out = {"members": members, "skipped_no_weights": skipped, "size": size, "test_accuracy": None,
           "member_test_accuracy": {m: float(np.mean(v == y)) for m, v in zip(members, votes)},
           "rule": "majority vote; ties broken by the highest summed softmax probability"}
    if members:
        labels = cv.majority_vote(np.stack(votes), np.stack(probs))
        out["test_accuracy"] = float(np.mean(labels == y))
        out["disagreements"] = int(np.sum(np.any(np.stack(votes) != votes[0], axis=0)))
    return out


# ---------------------------------------------------------------------------------------------
# The report


def _dna_info(record, num_classes: int | None) -> tuple[str, int | None]:
    from lse.core.genomes import describe

    return describe(getattr(record, "genome", "dna"), record.dna, num_classes)  # never raises


def summarize(exp: Experiment, num_classes: int | None, ens: dict | None) -> dict:
    inds = exp.inds
    best = cv.top_by_validation(inds, 1)
    last = max((i.born_at for i in inds), default=exp.start)
    hours = (last - exp.start) / 3600.0
    b = None
    if best:
        rec = exp.by_id[best[0].id]
        arch, depth = _dna_info(rec, num_classes)
        b = {"id": rec.id, "val_accuracy": rec.val_accuracy, "test_accuracy": exp.test.get(rec.id),
             "params": rec.params, "flops": rec.flops.total if rec.flops else None, "depth": depth,
             "generation": rec.generation, "architecture": arch, "learning_rate": rec.dna.get("learning_rate")}
    cfg = exp.config
    return {
        "label": exp.label, "pop": str(exp.pop), "dataset": getattr(cfg, "dataset", None),
        "selection": getattr(cfg, "selection", None), "inheritance": getattr(cfg, "inheritance", None),
        "population_size": getattr(cfg, "population_size", None), "steps": getattr(cfg, "steps", None),
        "best": b,
        "experiment_flops": float(sum(i.flops for i in inds)),
        "until_flops": exp.until_flops,
        "individuals_cut": exp.cut,
        "individuals": len(inds),
        "failed": sum(1 for i in inds if not i.has_fitness),
        "alive": sum(1 for i in inds if i.alive),
        "wall_hours": hours,
        "individuals_per_hour": cv.per_hour(len(inds), hours),
        "workers": len({i.worker for i in inds if i.worker}),
        "started_at": exp.start,
        "ensemble": ens,
        "mutations": [{"name": s.name, "children": s.children, "improved": s.improved, "failed": s.failed,
                       "rate": None if math.isnan(s.rate) else s.rate} for s in cv.mutation_stats(inds)],
        "test_missing": sorted(k for k, v in exp.test.items() if v is None),
        "references": [_reference_summary(r, hours) for r in exp.references],
        "retrained": _retrained(exp.pop),
    }


def _retrained(pop: Path) -> list[dict]:
    """`lse retrain`'s final models of this population (POP/retrained/), oldest first."""
    from lse.reports.models import retrained_results

    keep = ("name", "id", "from", "steps", "train_seconds", "val_accuracy", "test_accuracy", "flops")
    return [{k: r.get(k) for k in keep} for r in retrained_results(pop)]


def _reference_summary(ref, hours: float) -> dict:
    """A hand-designed anchor: where it ended, and its test accuracy after the experiment's wall time."""
    a = cv.anchor_curve(ref)
    last = ref.final()
    at = a.test_at(hours) if len(a) else math.nan
    return {"name": ref.name, "minutes": last.seconds / 60 if last else 0.0, "steps": last.steps if last else 0,
            "val_accuracy": last.val_accuracy if last else None, "test_accuracy": last.test_accuracy if last else None,
            "test_at_experiment_wall_time": None if math.isnan(at) else at, "done": ref.done, "params": ref.params,
            "ended_before": bool(last and last.seconds < hours * 3600)}


def make_report(
    pops: list[str | os.PathLike],
    out: str | os.PathLike,
    labels: list[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    ensemble_size: int = ENSEMBLE_SIZE,
    console=None,
    until_flops: float | None = None,
) -> dict:
    """Write the report of ``pops`` into ``out``; return its summary (also in summary.json).
    ``until_flops``: read every experiment up to that compute (:func:`within_flops`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lse.nn.data import load_dataset
    from lse.nn.train import resolve_device

    device = str(resolve_device(device))  # "auto": cuda when available, else cpu
    console = console or Console()
    if not pops:
        raise ConfigError("no population given", "pass at least one --pop DIR")
    if labels and len(labels) != len(pops):
        raise ConfigError(f"{len(labels)} --label for {len(pops)} --pop",
                          "give one --label per --pop (same label = repeats of one experiment), or none")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if until_flops is not None and not (math.isfinite(until_flops) and until_flops > 0):
        raise ConfigError(f"--until-flops {until_flops} is not a positive number of FLOPs", "give e.g. --until-flops 1e12")
    exps = [load_experiment(p, labels[k] if labels else None, until_flops) for k, p in enumerate(pops)]

    evaluators: dict[tuple, Evaluator] = {}

    def evaluator(exp: Experiment) -> Evaluator:
        cfg = exp.config
        key = (cfg.dataset, str(data_dir or cfg.data_dir), cfg.validation_size, cfg.seed)
        if key not in evaluators:
            ds = load_dataset(cfg.dataset, data_dir or cfg.data_dir, validation_size=cfg.validation_size,
                              seed=cfg.seed, device=device, image=cfg.image_options())
            evaluators[key] = Evaluator(ds, batch_size=cfg.eval_batch_size, device=device)
        return evaluators[key]

    # --- test accuracies: the best-so-far chain of every experiment ---
    needed = [(exp, i) for exp in exps for i in cv.best_chain_ids(exp.inds)]
    with Progress(TextColumn("[bold]test accuracy"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("", total=len(needed) + len(exps))
        for exp, iid in needed:
            bar.update(task, description=f"{exp.label} {iid}")
            exp.test[iid] = evaluator(exp).test_accuracy(exp.pop, exp.by_id[iid])
            bar.advance(task)
        for exp in exps:
            bar.update(task, description=f"{exp.label} ensemble")
            ev = evaluator(exp)
            ens = ensemble(exp, ev, ensemble_size) if exp.inds else None
            for m in (ens or {}).get("members", []):
                exp.test.setdefault(m, ev.test_accuracy(exp.pop, exp.by_id[m]))
            exp.num_classes = ev.dataset.num_classes
            exp.curve = cv.progress_curve(exp.inds, exp.test, exp.start, exp.label)
            exp.summary = summarize(exp, ev.dataset.num_classes, ens)
            bar.advance(task)

    files = write_outputs(exps, out)
    summary = {"experiments": [e.summary for e in exps], "files": files, "generated_at": time.time()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    print_summary(exps, console, out)
    return summary


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60] or "experiment"


def write_outputs(exps: list[Experiment], out: Path) -> dict:
    """Figures, tables and the HTML page of experiments whose curves and summaries are computed."""
    from lse.reports import figures

    files: dict[str, str] = {}
    groups: dict[str, list[cv.Curve]] = defaultdict(list)
    for e in exps:
        groups[e.label].append(e.curve)
    bands = {label: {axis: cv.repeat_band(cs, axis=axis, label=label) for axis in ("hours", "flops")}
             for label, cs in groups.items() if len(cs) > 1}
    anchors = [cv.anchor_curve(r, r.name if len(exps) == 1 else f"{r.name} ({e.label})")
               for e in exps for r in e.references]
    figures.progress_figure(groups, bands, out / "progress.png", anchors=anchors)
    files["progress"] = "progress.png"
    for k, e in enumerate(exps):
        tag = f"{k + 1}-{_slug(e.label)}"
        best = cv.top_by_validation(e.inds, 1)
        chain = cv.lineage(e.inds, best[0].id) if best else []
        drawn = cv.pick_ancestors(chain, ARCHITECTURES_DRAWN)
        archs = {}
        for i in drawn:
            text, _ = _dna_info(e.by_id[i.id], e.num_classes)
            archs[i.id] = "Input\n" + text.replace(" > ", "\n")
        title = f"{e.label}: every individual that ever lived ({len(e.inds)}), best by validation and its ancestry"
        marks = cv.event_marks(e.events, e.start)
        figures.individuals_figure(e.inds, e.start, chain, drawn, archs, out / f"individuals-{tag}.png", title, marks)
        files[f"individuals:{e.label}:{k}"] = f"individuals-{tag}.png"
        xs, trend = cv.distribution_trend(e.records, e.start)
        if xs:
            figures.distributions_figure(xs, trend, out / f"distributions-{tag}.png", marks,
                                         f"{e.label}: how the evolved mutation distributions moved")
            files[f"distributions:{e.label}:{k}"] = f"distributions-{tag}.png"
        stats = cv.mutation_stats(e.inds)
        if stats:
            figures.mutations_figure(stats, out / f"mutations-{tag}.png")
            files[f"mutations:{e.label}:{k}"] = f"mutations-{tag}.png"
    rows = individual_rows(exps)
    write_table(rows, out)
    files["csv"], files["json"] = "individuals.csv", "individuals.json"
    (out / "report.html").write_text(render_html(exps, files, out))
    files["html"] = "report.html"
    return files


# ---------------------------------------------------------------------------------------------
# Tables for notebooks

COLUMNS = ["experiment", "pop", "id", "parent_id", "generation", "state", "born_at", "hours", "val_accuracy",
           "test_accuracy", "failed_reason", "mutation", "params", "flops", "cumulative_flops", "depth",
           "learning_rate", "worker", "host", "train_seconds", "killed_at", "architecture", "best_so_far"]


def individual_rows(exps: list[Experiment]) -> list[dict]:
    rows = []
    for e in exps:
        chain = set(cv.best_chain_ids(e.inds))
        cum = 0.0
        for rec, ind in zip(e.records, e.inds):
            cum += ind.flops
            arch, depth = _dna_info(rec, e.num_classes)
            rows.append({
                "experiment": e.label, "pop": str(e.pop), "id": rec.id, "parent_id": rec.parent_id,
                "generation": rec.generation, "state": "alive" if ind.alive else "dead", "born_at": ind.born_at,
                "hours": (ind.born_at - e.start) / 3600.0, "val_accuracy": rec.val_accuracy,
                "test_accuracy": e.test.get(rec.id), "failed_reason": rec.failed_reason, "mutation": ind.mutation,
                "params": rec.params, "flops": ind.flops, "cumulative_flops": cum, "depth": depth,
                "learning_rate": rec.dna.get("learning_rate"), "worker": rec.worker, "host": rec.host,
                "train_seconds": rec.train_seconds, "killed_at": rec.killed_at, "architecture": arch,
                "best_so_far": rec.id in chain,
            })
    return rows


def write_table(rows: list[dict], out: Path) -> None:
    with open(out / "individuals.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
    (out / "individuals.json").write_text(json.dumps(rows, indent=1, default=_json_default) + "\n")


# ---------------------------------------------------------------------------------------------
# HTML and terminal


def _pct(v) -> str:
    return "missing" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def _num(v, fmt: str = "{:.3g}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def duration(hours: float) -> str:
    """45 s, 12.5 min or 3.25 h: a short experiment's wall time is not 0.003 h."""
    if hours * 60 < 2:
        return f"{hours * 3600:.0f} s"
    if hours < 2:
        return f"{hours * 60:.1f} min"
    return f"{hours:.2f} h"


def short_id(individual_id: str | None) -> str:
    """The random tail of an id, enough to tell individuals apart on a terminal."""
    return "-" if not individual_id else "…" + individual_id[-8:]


def summary_rows(s: dict, short: bool = False) -> list[tuple[str, str]]:
    """(name, value) rows of one experiment's summary; ``short`` for an 80-column terminal."""
    b = s.get("best") or {}
    ens = s.get("ensemble") or {}
    ens_txt = _pct(ens.get("test_accuracy")) if ens.get("members") else "missing (no weights)"
    if ens.get("members") and not short:
        ens_txt += f" ({len(ens['members'])} members" + (f", {ens.get('disagreements', 0)} disagreements" if len(ens["members"]) > 1 else "") + ")"
    return [
        ("data set / selection", f"{s['dataset']} / {s['selection']}, inheritance {'on' if s['inheritance'] else 'off'}"),
        ("population size / steps", f"{s['population_size']} / {s['steps']}"),
        ("best individual", short_id(b.get("id")) if short else b.get("id", "-")),
        ("best: validation accuracy", _pct(b.get("val_accuracy"))),
        ("best: test accuracy", _pct(b.get("test_accuracy"))),
        ("best: parameters", _num(b.get("params"), "{:,}")),
        ("best: FLOPs (its cost)", _num(b.get("flops"), "{:.3g}")),
        ("best: depth (convolutions)", _num(b.get("depth"), "{}")),
        ("best: learning rate", _num(b.get("learning_rate"), "{:.4g}")),
        ("best: architecture", b.get("architecture", "-")),
        (f"top-{ens.get('size', ENSEMBLE_SIZE)} ensemble test accuracy", ens_txt),
        ("experiment FLOPs", _num(s["experiment_flops"], "{:.3g}") + (
            f" (read up to {s['until_flops']:.3g}: {s['individuals_cut']} later individuals left out)"
            if s.get("until_flops") else "")),
        ("individuals trained", f"{s['individuals']} ({s['failed']} failed, {s['alive']} alive)"),
        ("wall time", duration(s["wall_hours"])),
        ("individuals per hour", _num(s["individuals_per_hour"], "{:.1f}")),
        ("workers", str(s["workers"])),
        ("test missing (no weights)", str(len(s["test_missing"]))),
        ("hand-designed anchor: test at this wall time", _anchors_text(s.get("references") or [], short)),
        *((f"retrained {short_id(r['id']) if short else r['name']}",
           f"test {_pct(r['test_accuracy'])}, validation {_pct(r['val_accuracy'])} ({r['steps']} steps from "
           f"{r['from']}, {_num(r['flops'], '{:.3g}')} FLOPs)") for r in s.get("retrained") or []),
    ]


def _anchors_text(refs: list[dict], short: bool) -> str:
    if not refs:
        return "- (lse reference)"
    out = []
    for r in refs:
        txt = _pct(r["test_at_experiment_wall_time"])
        if short and r["test_at_experiment_wall_time"] is not None and r["ended_before"]:
            txt += f" (its last, at {r['minutes']:.1f} min)"  # a shorter anchor holds its last value
        if not short:
            txt += (f" ({r['name']}, {r['params']:,} parameters; {_pct(r['test_accuracy'])} after "
                    f"{r['minutes']:.1f} min{'' if r['done'] else ', unfinished'})")
        out.append(txt)
    return "; ".join(out)


def _img(out: Path, name: str, alt: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em;word-break:break-all}img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
.note{color:#555;font-size:.9em}
"""


def render_html(exps: list[Experiment], files: dict, out: Path) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>lse report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>Evolution report</h1>",
        f'<p class="note">{len(exps)} experiment(s): ' + ", ".join(e(f"{x.label} ({x.pop})") for x in exps) + ". Generated "
        + e(time.strftime("%Y-%m-%d %H:%M:%S %Z")) + ".</p>",
        "<h2>Progress</h2>",
        _img(out, files["progress"], "Test accuracy of the individual with the highest validation accuracy born at or "
             "before t, against wall time and against the experiment's FLOPs (Figure 2). Same label = repeats: mean and ±2σ. In grey, where one was "
             "trained: a hand-designed CNN on the same data with the same trainer (lse reference)."),
        '<p class="note">Definitions (paper sections 3.5, 3.7): the best model is the one with the highest validation '
        "accuracy; its test accuracy is reported. An individual's cost is F<sub>t</sub>N<sub>t</sub> + "
        "F<sub>v</sub>N<sub>v</sub>; the experiment's FLOPs are the sum over its individuals in birth order. "
        "Test accuracies are computed by this report from the stored weights; where weights were garbage-collected "
        "the test accuracy is missing and the curve carries the last known value (hollow markers).</p>",
        "<h2>Summary</h2>",
    ]
    # one column per experiment
    rows = [summary_rows(x.summary) for x in exps]
    parts.append("<table><tr><th></th>" + "".join(f"<th>{e(x.label)}</th>" for x in exps) + "</tr>")
    for r, (name, _) in enumerate(rows[0]):
        cells = "".join(f"<td>{'<code>' + e(rs[r][1]) + '</code>' if 'architecture' in name or name == 'best individual' else e(rs[r][1])}</td>" for rs in rows)
        parts.append(f"<tr><th>{e(name)}</th>{cells}</tr>")
    parts.append("</table>")
    parts.append(f'<p class="note">Ensemble: the top-{ENSEMBLE_SIZE} individuals by validation accuracy vote on every test '
                 "image (majority vote, section 3.4); with two voters every disagreement is a tie, broken by the "
                 "higher summed softmax probability of the two models. Individuals without weights are replaced by the "
                 "next by validation accuracy.</p>")
    for k, x in enumerate(exps):
        s = x.summary
        parts.append(f"<h2>{e(x.label)} ({e(str(x.pop))})</h2>")
        key = f"individuals:{x.label}:{k}"
        if key in files:
            parts.append(_img(out, files[key], "Every individual (dots): alive blue, killed grey, failed red crosses; "
                              "the best individual's ancestry in orange; below, the architectures of the best and "
                              "some of its ancestors (Figure 1)."))
        if x.events:
            parts.append("<h3>Changes made while it ran (section 5; marked in the figure)</h3><table>"
                         "<tr><th>hours</th><th>event</th><th>until</th><th>source</th></tr>")
            for ev in x.events:
                what = "weight reset" if ev.kind == "reset" else f"{ev.mutations_per_child} mutation(s) per child"
                until = "" if ev.until is None else f"{(ev.until - x.start) / 3600:.3f}"
                parts.append(f"<tr><td class='num'>{(ev.at - x.start) / 3600:.3f}</td><td>{e(what)}</td>"
                             f"<td class='num'>{until}</td><td>{e(ev.source)}</td></tr>")
            parts.append("</table>")
        key = f"distributions:{x.label}:{k}"
        if key in files:
            parts.append(_img(out, files[key], "Mean evolved mutation distribution of the individuals born in each "
                              "period (section 5, Tuson & Ross)."))
        ens = s.get("ensemble") or {}
        if ens.get("members"):
            parts.append("<table><tr><th>ensemble member</th><th>validation</th><th>test</th></tr>")
            for m in ens["members"]:
                parts.append(f"<tr><td><code>{e(m)}</code></td><td class='num'>{_pct(x.by_id[m].val_accuracy)}</td>"
                             f"<td class='num'>{_pct(ens['member_test_accuracy'][m])}</td></tr>")
            parts.append(f"<tr><th>majority vote</th><td></td><td class='num'>{_pct(ens['test_accuracy'])}</td></tr></table>")
            if ens.get("skipped_no_weights"):
                parts.append(f'<p class="note">Ranked higher by validation but without weights (collected), so '
                             f'replaced: {e(", ".join(ens["skipped_no_weights"]))}.</p>')
        if s["mutations"]:
            parts.append("<h3>Which mutations produced children better than their parents</h3>")
            key = f"mutations:{x.label}:{k}"
            if key in files:
                parts.append(_img(out, files[key], "Children per mutation, and how many beat their parent's validation accuracy."))
            parts.append("<table><tr><th>mutation</th><th>children</th><th>better than parent</th><th>rate</th><th>failed</th></tr>")
            for m in s["mutations"]:
                parts.append(f"<tr><td>{e(m['name'])}</td><td class='num'>{m['children']}</td><td class='num'>{m['improved']}</td>"
                             f"<td class='num'>{_pct(m['rate'])}</td><td class='num'>{m['failed']}</td></tr>")
            parts.append("</table>")
        chain = cv.best_chain_ids(x.inds)
        parts.append("<h3>Best-so-far individuals (the curve's steps)</h3><table><tr><th>hours</th><th>id</th>"
                     "<th>validation</th><th>test</th></tr>")
        for iid in chain:
            i = next(j for j in x.inds if j.id == iid)
            parts.append(f"<tr><td class='num'>{(i.born_at - x.start) / 3600:.3f}</td><td><code>{e(iid)}</code></td>"
                         f"<td class='num'>{_pct(i.val_accuracy)}</td><td class='num'>{_pct(x.test.get(iid))}</td></tr>")
        parts.append("</table>")
    parts.append('<p class="note">Every individual: <code>individuals.csv</code> and <code>individuals.json</code> '
                 "beside this page.</p></body></html>")
    return "\n".join(parts) + "\n"


def print_summary(exps: list[Experiment], console, out: Path) -> None:
    from rich.table import Table

    t = Table(title="lse report", show_lines=False)
    t.add_column("")
    for x in exps:
        t.add_column(x.label, overflow="fold")
    rows = [summary_rows(x.summary, short=True) for x in exps]
    for r, (name, _) in enumerate(rows[0]):
        if name in ("best: architecture", "best: learning rate", "population size / steps", "data set / selection"):
            continue
        t.add_row(name, *[rs[r][1] for rs in rows])
    console.print(t)
    missing = sum(len(x.summary["test_missing"]) for x in exps)
    if missing:
        console.print(f"[yellow]{missing} best-so-far individual(s) had no weights left: test accuracy missing, "
                      "the curve carries the last known value (or starts later).[/]")
    console.print(f"report: {out / 'report.html'}")


# ---------------------------------------------------------------------------------------------
# CLI


def register_cli(app) -> None:
    import typer

    @app.command("report")
    def report_cmd(
        pop: list[Path] = typer.Option(..., "--pop", help="population directory; repeat for several experiments"),
        label: list[str] = typer.Option(None, "--label", help="one per --pop; the same label marks repeats (mean ±2σ)"),
        out: Path = typer.Option(..., "--out", help="folder for the figures, report.html and the CSV/JSON tables"),
        data_dir: Path = typer.Option(None, "--data-dir", help="data set folder (default: the experiment's)"),
        device: str = typer.Option("auto", "--device", help="where test accuracies are computed: auto | cpu | cuda (auto: cuda when available, else cpu)"),
        until_flops: float = typer.Option(None, "--until-flops", help="read each experiment only up to this compute (FLOPs, section 3.5): equal-compute comparisons"),
    ) -> None:
        """Progress curves (Figure 2), every individual (Figure 1), best model, top-2 ensemble, HTML page."""
        try:
            make_report(pop, out, labels=label or None, data_dir=data_dir, device=device, until_flops=until_flops)
        except (LseError, DataError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
