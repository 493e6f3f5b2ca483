"""Search efficiency at a user's scale (issue 19): the paper's ordering with repeats, and the
one-machine, one-hour goal, on real Fashion-MNIST.

    python experiments/search_efficiency.py ordering [--minutes 10] [--repeats 3] [--preset fast]
    python experiments/search_efficiency.py hour [--minutes 60] [--repeats 3] [--preset fast] [--tag T] [--launch-args ARGS] [--report-only] [--no-figure] [--compare TAG]
    python experiments/search_efficiency.py scale [--minutes 7] [--repeats 3] [--preset hour]
    python experiments/search_efficiency.py schedule --pop POP [--top 4] [--seeds 2] [--steps 500]

ordering: evolution, evolution without weight inheritance, and the random-search control
(Figure 2's three arms), each ``--repeats`` times for ``--minutes`` of wall time, one worker
with one thread each, two experiments at a time (equal hardware: every arm runs under the same
load); the report draws each arm as its mean with a +-2 sigma band.

hour: the issue's goal setting: 2 workers on the 2 cores, ``--minutes`` of wall time, one
experiment at a time, ``--repeats`` times; then the hand-designed anchor (`lse reference`) on the
first repeat's data for ``--anchor-minutes``; then the test accuracy of the best by validation at
fixed minutes of every repeat, with their mean and 2 sigma; then the report and its figure
(slow: it evaluates every best-so-far individual; ``--no-figure`` skips it).

scale: Figure 3's two axes at this configuration (section 5; the plot is
section5_figure3.plot): population 5, 10, 20 at the preset's steps, and 250, 500, 1000 steps per
child at population ``--population``; one worker each, two at a time, ``--repeats`` each.

schedule: the learning-rate schedule within a child, measured where it acts: the ``--top``
individuals of population POP by validation are each trained ``--steps`` more steps from their
own weights at their own learning rate, once with each schedule, with the same batches (seeds
1..``--seeds``); it compares the validation accuracies pair by pair.  The test split is not
read.

All write experiments/out/search-<study>/ (populations, report), their numbers to
docs/search-<study>.json and a figure in docs/figures/.  Scale-downs are those of the paper's section 3 at this machine's size: population
10 (paper 1,000), steps per individual from the preset (paper 25,600), validation 5,000.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _common import DATA, FIGURES, OUT, ROOT, best_test, copy_figure, launch_all, report, save
from section5_figure3 import plot

ARMS = {  # Figure 2's arms: the same configuration, one switch each
    "evolution": [],
    "no inheritance": ["--no-inheritance"],
    "random search": ["--selection", "random"],
}


def _config(a) -> list[str]:
    return ["--preset", a.preset, "--population-size", str(a.population), *a.launch_args.split()]


def ordering(a) -> dict:
    base = OUT / "search-ordering"
    hours = ["--max-hours", f"{a.minutes / 60:.6f}"]
    runs, labels = [], []
    for r in range(a.repeats):
        for arm, extra in ARMS.items():
            pop = base / f"{arm.replace(' ', '-')}-r{r}"
            runs.append((pop, [*hours, *_config(a), *extra, "--seed", str(r)]))
            labels.append(arm)
    launch_all(runs)
    pops = [p for p, _ in runs]
    s = report(pops, labels, base / "report")
    rows = _rows(s, labels, pops)
    out = {"study": "ordering", "minutes": a.minutes, "repeats": a.repeats, "preset": a.preset,
           "population": a.population, "rows": rows, "arms": _arms(rows)}
    save("search-ordering", out)
    copy_figure(base / "report" / "progress.png", f"search-ordering-{a.preset}.png")
    return out


def hour(a) -> dict:
    name = f"search-hour-{a.tag or a.preset}"
    base = OUT / name
    runs, labels = [], []
    for r in range(a.repeats):
        pop = base / f"r{r}"
        runs.append((pop, ["--max-hours", f"{a.minutes / 60:.6f}", *_config(a), "--seed", str(r),
                           "--workers", "2", "--validation-size", "5000"]))  # the goal's setting (last value wins over _common's)
        labels.append(f"{a.preset}, 2 workers")
    if not a.report_only:
        launch_all([(p, [*args, "--threads", "1"]) for p, args in runs], parallel=1)
    pops = [p for p, _ in runs]
    if a.anchor_minutes > 0 and not a.report_only:
        subprocess.run([sys.executable, "-c", "from lse.cli import app; app()", "reference", "--pop", str(pops[0]),
                        "--minutes", str(a.anchor_minutes), "--threads", "2"], check=True, cwd=ROOT)
    # The checkpoints first: they evaluate one individual per checkpoint, where the report
    # evaluates every best-so-far individual (slow on 2 cores); both share the test cache.
    evaluate = _test_evaluator()
    rows = [{"arm": label, "pop": str(p), **_checkpoints(p, a.minutes, evaluate)} for label, p in zip(labels, pops)]
    out = {"study": "hour", "tag": a.tag, "minutes": a.minutes, "repeats": a.repeats, "preset": a.preset,
           "population": a.population, "launch_args": a.launch_args, "rows": rows,
           "checkpoints": {c["minutes"]: _spread([r["checkpoints"][k]["test"] for r in rows])
                           for k, c in enumerate(rows[0]["checkpoints"])
                           if all(len(r["checkpoints"]) > k and r["checkpoints"][k]["test"] is not None for r in rows)}}
    for m, v in out["checkpoints"].items():
        print(f"minute {m:>4}: test of the best by validation {100 * v['mean']:.2f}% ± {100 * v['two_sigma']:.2f} (2σ)"
              f"  {[round(100 * x, 2) for x in v['values']]}")
    save(name, out)
    _plot_checkpoints(out, f"{name}-checkpoints.png", a.compare)
    if not a.figure:
        return out
    s = report(pops, labels, base / "report")
    for row, more in zip(rows, _rows(s, labels, pops)):
        row.update(more)
    out.update(arms=_arms(rows), anchor=s["experiments"][0].get("references"))
    save(name, out)
    copy_figure(base / "report" / "progress.png", f"{name}.png")
    return out


SCALE_POPULATIONS = (5, 10, 20)  # at the preset's steps
SCALE_STEPS = (250, 500, 1000)  # at population 10


def scale(a) -> dict:
    """Figure 3's two axes at this configuration: population size (at the preset's steps) and
    steps per child (at population ``--population``), every experiment given the same wall
    time, ``--repeats`` each; the point the two axes share runs once per repeat."""
    base = OUT / f"search-scale-{a.tag or a.preset}"
    hours = ["--max-hours", f"{a.minutes / 60:.6f}"]
    points = list(dict.fromkeys([*((p, a.preset_steps) for p in SCALE_POPULATIONS),
                                 *((a.population, t) for t in SCALE_STEPS)]))
    runs, keys = [], []
    for r in range(a.repeats):
        for pop_size, steps in points:
            runs.append((base / f"pop{pop_size}-steps{steps}-r{r}",
                         [*hours, "--preset", a.preset, "--population-size", str(pop_size), "--steps", str(steps),
                          *a.launch_args.split(), "--seed", str(r)]))
            keys.append((pop_size, steps))
    if not a.report_only:
        launch_all(runs)
    pops = [p for p, _ in runs]
    s = report(pops, [p.name.rsplit("-r", 1)[0] for p in pops], base / "report")
    rows = []
    for (pop_size, steps), p, t, e in zip(keys, pops, best_test(s), s["experiments"]):
        point = {"pop": str(p), "best_test": t, "best_val": (e["best"] or {}).get("val_accuracy"),
                 "individuals": e["individuals"], "params": (e["best"] or {}).get("params")}
        if steps == a.preset_steps:
            rows.append({"axis": "population size", "x": pop_size, **point})
        if pop_size == a.population:
            rows.append({"axis": "steps per individual", "x": steps, **point})
    out = {"study": "scale", "minutes": a.minutes, "repeats": a.repeats, "preset": a.preset,
           "launch_args": a.launch_args, "rows": rows, "points": _points(rows)}
    save(base.name, out)
    plot(rows, FIGURES / f"{base.name}.png",
         title=f"--preset {a.preset} {a.launch_args}: every circle one experiment of {a.minutes:g} min; mean ± 2σ")
    return out


def schedule(a) -> dict:
    import torch

    from lse.nn.data import load_dataset
    from lse.nn.genomes import build
    from lse.nn.train import LR_SCHEDULES, train
    from lse.reports import curves as cv
    from lse.reports.report import load_experiment, load_weights

    if a.pop is None:
        sys.exit("schedule: give --pop, a population whose best individuals to retrain")
    torch.set_num_threads(2)
    exp = load_experiment(a.pop)
    cfg = exp.config
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed, flip=cfg.flip)
    pairs = []
    for ind in cv.top_by_validation(exp.inds, len(exp.inds)):
        state = load_weights(exp.pop, ind.id)
        if state is None:
            continue
        record = exp.by_id[ind.id]
        for seed in range(1, a.seeds + 1):
            row = {"id": ind.id, "seed": seed, "learning_rate": record.dna["learning_rate"], "val_before": ind.val_accuracy}
            for name in LR_SCHEDULES:
                torch.manual_seed(0)
                model = build(record.genome, record.dna, tuple(ds.input_shape), ds.num_classes)
                model.load_state_dict(state)
                res = train(model, ds, learning_rate=record.dna["learning_rate"], steps=a.steps, batch_size=cfg.batch_size,
                            momentum=cfg.momentum, weight_decay=cfg.weight_decay, seed=seed, augment=cfg.augment,
                            lr_schedule=name)
                row[name] = res.val_accuracy
            print(f"{ind.id}  seed {seed}  lr {row['learning_rate']:.3g}: "
                  + "  ".join(f"{n} {100 * row[n]:.2f}%" for n in LR_SCHEDULES), flush=True)
            pairs.append(row)
        if len({p["id"] for p in pairs}) == a.top:
            break
    out = {"study": "schedule", "pop": str(a.pop), "steps": a.steps, "pairs": pairs,
           "arms": {n: _spread([p[n] for p in pairs]) for n in LR_SCHEDULES},
           "cosine_ahead": sum(p["cosine"] > p["constant"] for p in pairs)}
    save("search-schedule", out)
    print(f"cosine ahead in {out['cosine_ahead']} of {len(pairs)} pairs")
    return out


CHECKPOINT_MINUTES = (2, 6, 10, 20, 30, 40, 45, 60)


def _test_evaluator():
    """``evaluate(pop, record, cfg)``: the record's test accuracy (``cfg``: its experiment's), with the report's own evaluator and
    cache (one Evaluator per data set and split)."""
    from lse.nn.data import load_dataset
    from lse.reports.report import Evaluator

    evaluators = {}

    def evaluate(pop, record, cfg) -> float | None:
        key = (cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.seed)
        if key not in evaluators:
            ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed)
            evaluators[key] = Evaluator(ds, batch_size=cfg.eval_batch_size)
        return evaluators[key].test_accuracy(pop, record)

    return evaluate


def _checkpoints(pop, minutes: float, evaluate) -> dict:
    """``checkpoints``: the best by validation among the individuals born by each of CHECKPOINT_MINUTES (and
    the end), with its test accuracy (``evaluate``: :func:`_test_evaluator`).  The report draws
    the same individuals: its best-so-far chain holds every checkpoint's best.
    ``children_by_steps``: how many trained children trained each number of steps (a step
    schedule's effect)."""
    from collections import Counter

    from lse.reports import curves as cv
    from lse.reports.report import _dna_info, load_experiment

    exp = load_experiment(pop)
    out = []
    for m in [*(m for m in CHECKPOINT_MINUTES if m < minutes), minutes]:
        born = [i for i in exp.inds if i.born_at - exp.start <= 60 * m]
        best = cv.top_by_validation(born, 1)
        if best:
            rec = exp.by_id[best[0].id]
            out.append({"minutes": m, "individuals": len(born), "id": rec.id, "val": rec.val_accuracy,
                        "test": evaluate(pop, rec, exp.config), "params": rec.params, "steps": rec.steps,
                        "arch": _dna_info(rec, exp.num_classes)[0]})
    by_steps = Counter(r.steps for r in exp.records if r.fitness is not None)
    return {"checkpoints": out, "children_by_steps": dict(sorted(by_steps.items()))}


def _plot_checkpoints(out: dict, figure: str, compare: str | None) -> None:
    """Test accuracy of the best by validation at each checkpoint: every repeat (thin), their
    mean with a 2 sigma band; ``compare``: another hour study's mean and band (its saved JSON),
    in grey."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))

    def band(study: dict, color: str, label: str) -> None:
        cps = {float(m): v for m, v in study["checkpoints"].items()}
        xs = sorted(cps)
        mean = [100 * cps[x]["mean"] for x in xs]
        two = [100 * cps[x]["two_sigma"] for x in xs]
        ax.plot(xs, mean, "o-", color=color, label=f"{label}: mean of {study['repeats']}")
        ax.fill_between(xs, [m - t for m, t in zip(mean, two)], [m + t for m, t in zip(mean, two)], color=color,
                        alpha=0.15, label=f"{label}: ±2σ")

    if compare:
        band(json.loads((DATA / f"search-hour-{compare}.json").read_text()), "0.5", compare)
    for r in out["rows"]:
        ax.plot([c["minutes"] for c in r["checkpoints"]], [100 * (c["test"] or float("nan")) for c in r["checkpoints"]],
                "-", color="tab:blue", lw=0.8, alpha=0.5)
    band(out, "tab:blue", out.get("tag") or out["preset"])
    ax.axhline(90, color="tab:red", lw=0.8, ls="--", label="the goal: 90%")
    ax.set(xlabel="minutes (2 workers, 2 cores)", ylabel="test accuracy of the best by validation (%)",
           ylim=(65, 93), title="Fashion-MNIST, from the trivial initial individual")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(FIGURES / figure, dpi=110)
    plt.close(fig)


def _spread(xs: list[float]) -> dict:
    """Mean and +-2 sigma (sample sigma) of final test accuracies."""
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return {"n": len(xs), "mean": statistics.fmean(xs) if xs else None, "two_sigma": 2 * sd, "values": xs}


def _points(rows: list[dict]) -> dict:
    """Per point of each axis: :func:`_spread` of the test accuracy of the best by validation."""
    return {f"{axis}={x}": _spread([r["best_test"] for r in rows
                                    if r["axis"] == axis and r["x"] == x and r["best_test"] is not None])
            for axis in dict.fromkeys(r["axis"] for r in rows)
            for x in sorted({r["x"] for r in rows if r["axis"] == axis})}


def _rows(s: dict, labels: list[str], pops) -> list[dict]:
    return [{"arm": label, "pop": str(p), "best_test": t, "best_val": (e["best"] or {}).get("val_accuracy"),
             "params": (e["best"] or {}).get("params"), "individuals": e["individuals"],
             "wall_minutes": 60 * e["wall_hours"], "architecture": (e["best"] or {}).get("architecture")}
            for label, p, t, e in zip(labels, pops, best_test(s), s["experiments"])]


def _arms(rows: list[dict]) -> dict:
    """Per arm: :func:`_spread` of the test accuracy of the best by validation."""
    return {arm: _spread([r["best_test"] for r in rows if r["arm"] == arm and r["best_test"] is not None])
            for arm in dict.fromkeys(r["arm"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=["ordering", "hour", "scale", "schedule"])
    ap.add_argument("--minutes", type=float, default=None, help="wall time of every experiment (ordering 10, hour 60)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="fast", help="lse launch --preset (paper, quick, fast)")
    ap.add_argument("--population", type=int, default=10)
    ap.add_argument("--anchor-minutes", type=float, default=15.0, help="hour: wall time of the hand-designed anchor")
    ap.add_argument("--launch-args", default="",
                    help='further lse launch options for every experiment, e.g. "--no-morph" (options given win over the preset)')
    ap.add_argument("--tag", default=None, help="hour, scale: names the output (search-STUDY-TAG; default: the preset)")
    ap.add_argument("--report-only", action="store_true",
                    help="hour, scale: launch nothing, redraw the report and JSON from the populations already there")
    ap.add_argument("--no-figure", dest="figure", action="store_false",
                    help="hour: the checkpoints only (one test evaluation per checkpoint), no report or figure")
    ap.add_argument("--compare", default=None,
                    help="hour: the TAG of an earlier hour study whose checkpoints the figure draws in grey")
    ap.add_argument("--pop", default=None, help="schedule: the population whose best individuals are retrained")
    ap.add_argument("--top", type=int, default=4, help="schedule: how many of the best by validation")
    ap.add_argument("--seeds", type=int, default=2, help="schedule: batch orders per individual")
    ap.add_argument("--steps", type=int, default=500, help="schedule: steps of each retraining")
    a = ap.parse_args()
    a.minutes = a.minutes or (10.0 if a.study == "ordering" else 60.0)
    FIGURES.mkdir(parents=True, exist_ok=True)
    if a.study == "scale":
        from lse.config import PRESETS, ExperimentConfig

        a.preset_steps = PRESETS[a.preset].get("steps", ExperimentConfig.model_fields["steps"].default)
    out = {"ordering": ordering, "hour": hour, "scale": scale, "schedule": schedule}[a.study](a)
    for arm, v in out.get("arms", out.get("points", {})).items():
        mean = "-" if v["mean"] is None else f"{100 * v['mean']:.2f}%"
        print(f"{arm:>16}: {mean} ± {100 * v['two_sigma']:.2f} (2σ, n={v['n']})  {[round(100 * x, 2) for x in v['values']]}")


if __name__ == "__main__":
    main()
