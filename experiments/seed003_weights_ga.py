"""Seed 003 reproduced, scaled down: GA training of the MNIST net of Table 2 on Fashion-MNIST.

Runs, each a real population driven by the real worker loop (lse.runners.worker.run_worker,
one worker, 1 torch thread), all from the SAME initial population (init_seed):

    ga-steady-state, ga-generational, ga-elitism  x  accordion, traditional

then the Adam baseline: the fittest member of that initial population trained with Adam
(lr 1e-3, batch 32, the paper's batch) on the training split minus the fitness subset.

Writes into --out: curves.json (every measured point), runs.csv (one line per run: children,
store share, best fitness, test accuracy of the final best), and the plots
  encodings.png    Accordion vs traditional, per scheme (best and mean fitness, log iterations)
  schemes.png      steady-state vs generational vs elitism (Accordion)
  adam.png         Accordion + elitism vs Adam, against log iterations and against wall time
  walltime.png     every run against wall time

Fitness = accuracy on the experiment's validation split, a fixed seeded subset of the training
split (--fitness-size images).  The test split is read only at the end, for the final best of
each run and for Adam (a report, never a selection).

    nice -n 10 python experiments/seed003_weights_ga.py --seconds 150 --out docs/seed003
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

RUNS = [(s, e) for s in ("ga-steady-state", "ga-generational", "ga-elitism") for e in ("accordion", "traditional")]


def run_ga(root: Path, scheme: str, encoding: str, args) -> Path:
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.runners.worker import run_worker
    from lse.store import Store

    pop = root / f"{scheme}-{encoding}"
    if args.reuse and (pop / "experiment.json").exists():
        return pop
    if pop.exists():
        shutil.rmtree(pop)
    options = {"encoding": encoding, "init_seed": args.init_seed}
    if scheme == "ga-elitism":  # the paper's 10 elites and pool of 20 for 100, scaled with the population
        options.update(elites=max(1, round(0.1 * args.population)), pool_size=max(2, round(0.2 * args.population)))
    cfg = ExperimentConfig(
        dataset="fashion-mnist", data_dir=args.data_dir, validation_size=args.fitness_size, seed=args.seed,
        population_size=args.population, eval_batch_size=args.fitness_size, batch_size=32,
        max_hours=args.seconds / 3600.0, max_individuals=args.population + args.iterations,
        algorithm={"name": scheme, "options": options},
    )
    Store(pop).create(cfg)
    t = time.time()
    summary = run_worker(pop, WorkerOptions(device="cpu", threads=1), worker_id="w0", handle_signals=False)
    print(f"{scheme} {encoding}: {summary.births} children in {time.time() - t:.0f} s ({summary.stop_reason})", flush=True)
    return pop


def curve(pop: Path) -> dict:
    """Best and mean fitness of the population after each iteration (a child evaluated after
    the initial population), with the wall time since the experiment was created."""
    from lse.store import Store
    from lse.store.generations import Generations

    store = Store(pop).open()
    recs = store.records()
    t0 = os.stat(store.paths.experiment).st_mtime
    fit = {r.id: r.fitness for r in recs}
    n = store.config.population_size
    points = []
    if store.config.algorithm.name == "ga-steady-state":
        events = sorted([(r.born_at, 1, r.id) for r in recs] + [(r.killed_at, 0, r.id) for r in recs if r.killed_at])
        alive: set[str] = set()
        births = 0
        for t, kind, iid in events:
            if kind == 1:
                births += 1
                if fit[iid] is not None:
                    alive.add(iid)
            else:
                alive.discard(iid)
            if kind == 1 and births >= n:
                vals = [fit[i] for i in alive]
                points.append((births - n, t - t0, max(vals), sum(vals) / len(vals)))
    else:
        gens = Generations(store, slots=1)
        born = {r.id: r.born_at for r in recs}
        g, evaluated = 0, 0
        while (plan := gens.plan(g)) is not None:
            vals = [fit[i] for i in plan.survivors if fit.get(i) is not None]
            if g > 0:
                evaluated += len(plan.children)
            t = max(born[c.id] for c in plan.children if c.id in born)
            points.append((evaluated, t - t0, max(vals), sum(vals) / len(vals)))
            g += 1
    compute = sum((r.train_seconds or 0) + (r.eval_seconds or 0) for r in recs)
    wall = max(r.born_at for r in recs) - min(r.extra.get("started_at", r.born_at) for r in recs)
    return {"points": points, "children": len(recs), "wall_s": wall,
            "assemble_s": sum(r.train_seconds or 0 for r in recs), "eval_s": sum(r.eval_seconds or 0 for r in recs),
            "store_share": 1 - compute / wall if wall > 0 else None}


def best_test_accuracy(pop: Path) -> tuple[float, float, str]:
    """(fitness, test accuracy, id) of the fittest alive individual: the only test-set read."""
    from lse.core.fixednet import FixedNet
    from lse.nn.data import load_dataset
    from lse.nn.fixednet import build_fixed_net
    from lse.nn.train import evaluate
    from lse.store import Store

    store = Store(pop).open()
    cfg = store.config
    best = max(store.list_alive(), key=lambda e: (e.fitness, e.id))
    rec, state = store.read_parent(best)
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed)
    model = build_fixed_net(FixedNet.model_validate(rec.dna), ds.input_shape, ds.num_classes)
    model.load_state_dict(state)
    return best.fitness, evaluate(model, ds.test_x, ds.test_y, 1000, dataset=ds), best.id


def adam_baseline(pop: Path, args) -> dict:
    """The fittest member of the initial population, trained with Adam on the same axes."""
    import torch

    from lse.core.chromosome import derive_seed
    from lse.core.fixednet import FixedNet
    from lse.nn.data import load_dataset, normalize
    from lse.nn.fixednet import build_fixed_net, initial_state
    from lse.nn.train import evaluate
    from lse.store import Store

    store = Store(pop).open()
    cfg = store.config
    initial = [r for r in store.records() if not r.parents and r.fitness is not None]
    first = max(initial, key=lambda r: (r.fitness, r.id))
    init = first.extra["init"]
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed)
    genome = FixedNet.model_validate(first.dna)
    model = build_fixed_net(genome, ds.input_shape, ds.num_classes)
    model.load_state_dict(initial_state(genome, ds.input_shape, ds.num_classes,
                                        derive_seed("init", init["seed"], init["index"], init.get("draw"))))
    start_fit = evaluate(model, ds.val_x, ds.val_y, 1000, dataset=ds)
    assert abs(start_fit - first.fitness) < 1e-9, (start_fit, first.fitness)  # the same individual
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scale, shift = ds.normalization()
    g = torch.Generator().manual_seed(args.seed)
    points = [(0, 0.0, start_fit)]
    train_s, it = 0.0, 0
    marks = sorted({int(round(10 ** (k / 8))) for k in range(0, 40)})
    model.train()
    while train_s < args.adam_seconds:
        t = time.perf_counter()
        idx = torch.randint(0, ds.train_x.shape[0], (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(normalize(ds.train_x[idx], scale, shift)), ds.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_s += time.perf_counter() - t
        it += 1
        if it in marks or it % 500 == 0:
            points.append((it, train_s, evaluate(model, ds.val_x, ds.val_y, 1000, dataset=ds)))
            model.train()
    test = evaluate(model, ds.test_x, ds.test_y, 1000, dataset=ds)
    return {"initial_id": first.id, "initial_index": init["index"], "points": points, "iterations": it,
            "train_s": train_s, "test_accuracy": test, "final_fitness": points[-1][2]}


def plots(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ga-steady-state": "tab:blue", "ga-generational": "tab:orange", "ga-elitism": "tab:green"}
    style = {"accordion": "-", "traditional": ":"}

    def draw(ax, key, xi, label, color, ls, mean=True):
        pts = data["runs"][key]["points"]
        xs = [max(1, p[xi]) for p in pts]
        ax.plot(xs, [p[2] for p in pts], ls, color=color, label=f"{label} best")
        if mean:
            ax.plot(xs, [p[3] for p in pts], ls, color=color, alpha=0.4, label=f"{label} mean")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True)
    for ax, scheme in zip(axes, colors):
        for enc in style:
            draw(ax, f"{scheme}-{enc}", 0, enc, "tab:green" if enc == "accordion" else "tab:red", style[enc])
        ax.set(xscale="log", title=scheme, xlabel="iterations (children evaluated)", ylabel="fitness (subset accuracy)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "encodings.png", dpi=110)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for scheme, c in colors.items():
        draw(ax, f"{scheme}-accordion", 0, scheme, c, "-")
    ax.set(xscale="log", title="schemes (Accordion)", xlabel="iterations (children evaluated)", ylabel="fitness")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "schemes.png", dpi=110)

    adam = data["adam"]["points"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, xi, xl in ((axes[0], 0, "iterations (GA: children; Adam: batches of 32)"),
                       (axes[1], 1, "wall seconds (GA: since creation; Adam: training only)")):
        draw(ax, "ga-elitism-accordion", xi, "Accordion + elitism", "tab:green", "-")
        ax.plot([max(1 if xi == 0 else 0.01, p[xi]) for p in adam], [p[2] for p in adam], "-", color="black",
                label="Adam (fittest initial member)")
        ax.set(xscale="log", xlabel=xl, ylabel="fitness (subset accuracy)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "adam.png", dpi=110)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for scheme, c in colors.items():
        for enc in style:
            pts = data["runs"][f"{scheme}-{enc}"]["points"]
            ax.plot([p[1] for p in pts], [p[2] for p in pts], style[enc], color=c, label=f"{scheme} {enc} best")
    ax.set(title="best fitness against wall time", xlabel="wall seconds since creation", ylabel="fitness")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "walltime.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/seed003"))
    p.add_argument("--work", type=Path, default=Path("populations/seed003"), help="population folders")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: lse's search path)")
    p.add_argument("--iterations", type=int, default=400,
                   help="children evaluated after the initial population, per GA run (the same for every run: "
                        "the machine's load changes, iterations do not)")
    p.add_argument("--seconds", type=float, default=600.0, help="safety cap in wall seconds per GA run; Adam's training time")
    p.add_argument("--adam-seconds", type=float, default=90.0, help="Adam's training time (evaluation excluded)")
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--fitness-size", type=int, default=500, help="images in the fitness subset of the training split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="keep populations already in --work (plots, Adam only)")
    p.add_argument("--only", nargs="*", default=None, help="run only these SCHEME-ENCODING (plots need all)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    data = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
            "load_average_at_start": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    rows = []
    for scheme, enc in RUNS:
        key = f"{scheme}-{enc}"
        if args.only and key not in args.only:
            continue
        pop = run_ga(args.work, scheme, enc, args)
        c = curve(pop)
        fitness, test, best = best_test_accuracy(pop)
        c.update(best_id=best, best_fitness=fitness, best_test_accuracy=test)
        data["runs"][key] = c
        rows.append({"run": key, "children": c["children"], "iterations": c["points"][-1][0] if c["points"] else 0,
                     "wall_s": round(c["wall_s"], 1), "assemble_ms": round(1000 * c["assemble_s"] / c["children"], 1),
                     "eval_ms": round(1000 * c["eval_s"] / c["children"], 1),
                     "store_share": round(c["store_share"], 3) if c["store_share"] is not None else "",
                     "initial_best": round(c["points"][0][2], 4) if c["points"] else "",
                     "final_best": round(fitness, 4), "final_mean": round(c["points"][-1][3], 4) if c["points"] else "",
                     "test_acc_of_best": round(test, 4)})
        (args.out / "curves.json").write_text(json.dumps(data, indent=1))
    if not args.only:
        data["adam"] = adam_baseline(args.work / "ga-elitism-accordion", args)
        a = data["adam"]
        rows.append({"run": "adam", "iterations": a["iterations"], "wall_s": round(a["train_s"], 1),
                     "initial_best": round(a["points"][0][2], 4), "final_best": round(a["final_fitness"], 4),
                     "test_acc_of_best": round(a["test_accuracy"], 4)})
        plots(data, args.out)
    data["load_average_at_end"] = os.getloadavg()
    (args.out / "curves.json").write_text(json.dumps(data, indent=1))
    with open(args.out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
