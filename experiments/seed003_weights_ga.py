"""Seed 003 reproduced: GA training of fixed CNNs' weights, paired and repeated (issue 32).

Every run is :class:`lse.runners.ga_memory.MemoryGA` -- the algorithms of lse.algorithms.weightga
driven in memory, since the population store's 35-100 ms per child cannot carry 10^5-10^6
children (docs/seed003) -- or a backpropagation baseline.  Arms of one seed share everything the
paper keeps equal: the initial population (init_seed = the seed), the data split, the sequence
of fitness batches, and for the baselines the fittest initial member.

    python experiments/seed003_weights_ga.py --out docs/seed003 --jobs 2            # every run
    python experiments/seed003_weights_ga.py --out docs/seed003 --report             # page + plots

Runs are written one JSON each under OUT/runs/ as they finish (an interrupted invocation resumes;
--force reruns).  --report writes OUT/README.md's tables (between its markers) and the figures
from those files only.  The test split is read once per run, for the final fittest member (and the trained
baseline): a report, never a selection.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "experiments"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import _study as study  # noqa: E402  (after the path it lives on)

SCHEMES = ("ga-steady-state", "ga-elitism", "ga-generational")
ENCODINGS = ("accordion", "traditional")
PAD = {"mnist-table2": 0, "lenet-table3": 2}  # LeNet of Table 3 wants 32x32: Fashion-MNIST padded


def plan(args) -> list[dict]:
    """Every run of the study, as task dicts (one JSON file each)."""
    tasks: list[dict] = []
    gen_it, ss_it = args.generations, args.iterations
    for seed in args.seeds:
        for scheme in SCHEMES:
            for enc in ENCODINGS:
                # elitism: the survivors re-judged on each iteration's batch (MemoryGA's rejudge)
                tasks.append(dict(kind="ga", net="mnist-table2", scheme=scheme, encoding=enc, fitness=32, seed=seed,
                                  iterations=ss_it if scheme == "ga-steady-state" else gen_it,
                                  rejudge=scheme == "ga-elitism"))
        # the diagnostic: elitism whose elites keep the fitness of the batch they were judged on
        tasks.append(dict(kind="ga", net="mnist-table2", scheme="ga-elitism", encoding="accordion", fitness=32,
                          seed=seed, iterations=gen_it, rejudge=False))
        # which fitness generalises: a fixed subset against changing batches (steady state, Accordion)
        tasks.append(dict(kind="ga", net="mnist-table2", scheme="ga-steady-state", encoding="accordion",
                          fitness=f"subset{args.subset}", seed=seed, iterations=ss_it))
        for opt in ("sgd", "adam"):
            tasks.append(dict(kind="backprop", net="mnist-table2", optimizer=opt, seed=seed, iterations=ss_it))
        # LeNet (Table 3) on 32x32: steady state and elitism, Accordion; the baselines
        tasks.append(dict(kind="ga", net="lenet-table3", scheme="ga-steady-state", encoding="accordion", fitness=32,
                          seed=seed, iterations=ss_it))
        tasks.append(dict(kind="ga", net="lenet-table3", scheme="ga-elitism", encoding="accordion", fitness=32,
                          seed=seed, iterations=args.lenet_generations, rejudge=True))
        for opt in ("sgd", "adam"):
            tasks.append(dict(kind="backprop", net="lenet-table3", optimizer=opt, seed=seed, iterations=ss_it))
    return tasks


def key(t: dict) -> str:
    if t["kind"] == "ga":
        return f"{t['net']}_{t['scheme']}_{t['encoding']}_{t['fitness']}{'_rejudged' if t.get('rejudge') else ''}_seed{t['seed']}"
    return f"{t['net']}_{t['optimizer']}_seed{t['seed']}"


def config(t: dict, args, scheme: str | None = None, fitness=32):
    from lse.config import ExperimentConfig

    opts = {"net": t["net"], "encoding": t.get("encoding", "accordion"), "init_seed": t["seed"]}
    if isinstance(fitness, int):
        opts["fitness_batch"] = fitness
    return ExperimentConfig(dataset="fashion-mnist", data_dir=args.data_dir, validation_size=args.subset,
                            seed=t["seed"], population_size=args.population,
                            algorithm={"name": scheme or t["scheme"], "options": opts})


def test_accuracy(net: str, member: dict, ds, pad: int, device: str) -> float:
    """The only test-split read of a run: its final model, for the report."""
    from lse.nn.population import population_accuracy
    from lse.runners.ga_memory import images

    x = images(ds, pad, device)(ds.test_x)
    weights = {n: w.unsqueeze(0).to(device) for n, w in member.items()}
    return float(population_accuracy(net, weights, x, ds.test_y.to(device), ds.num_classes, group=1, chunk=2000)[0])


def run_task(t: dict, args) -> dict:
    import torch

    from lse.nn.data import load_dataset
    from lse.nn.population import population_accuracy
    from lse.runners.ga_memory import MemoryGA, backprop_baseline

    torch.set_num_threads(args.threads)
    torch.manual_seed(t["seed"])
    ds = load_dataset("fashion-mnist", args.data_dir, validation_size=args.subset, seed=t["seed"])
    pad = PAD[t["net"]]
    started = time.perf_counter()
    out = {"task": t, "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                                  f"{args.threads} thread(s), {args.device}",
           "load_average_at_start": os.getloadavg(), "population": args.population, "monitor": args.monitor}
    if t["kind"] == "ga":
        fitness = t["fitness"] if isinstance(t["fitness"], int) else None
        ga = MemoryGA(config(t, args, fitness=fitness), ds, device=args.device, pad=pad, monitor=args.monitor,
                      rejudge=bool(t.get("rejudge")))
        r = ga.run(t["iterations"], checkpoints=args.checkpoints)
        pop = r.population
        best = pop.fittest()
        mon = population_accuracy(ga.net, pop.weights, ga.mon_x, ga.mon_y, ga.num_classes, group=ga.group)
        out.update(points=[p.row() for p in r.points], iterations=r.iterations, children=r.children,
                   seconds=r.seconds, final_monitor_mean=float(mon.mean()), final_monitor_max=float(mon.max()),
                   final_monitor_of_fittest=float(mon[best]),
                   test_accuracy_of_fittest=test_accuracy(ga.net, pop.member(best), ds, pad, args.device))
    else:
        # the paper's protocol: the fittest member of the initial population (judged as the GA
        # judges it at iteration 0: on the first fitness batch of 32), trained by backpropagation
        ga = MemoryGA(config(t, args, scheme="ga-steady-state"), ds, device=args.device, pad=pad, monitor=args.monitor)
        pop = ga.initial_population()
        lr = {"sgd": args.sgd_lr, "adam": args.adam_lr}[t["optimizer"]]
        points, model = backprop_baseline(ds, pop.member(pop.fittest()), t["net"], optimizer=t["optimizer"],
                                          iterations=t["iterations"], lr=lr, seed=t["seed"], pad=pad,
                                          monitor=args.monitor, checkpoints=args.checkpoints, device=args.device)
        state = {k: v.detach() for k, v in model.state_dict().items()}
        out.update(points=points, iterations=t["iterations"], lr=lr, initial_fitness=pop.fitness[pop.fittest()],
                   test_accuracy=test_accuracy(t["net"], state, ds, pad, args.device))
    out["wall_s"] = time.perf_counter() - started
    return out


def _worker(payload):
    t, args = payload
    path = args.out / "runs" / f"{key(t)}.json"
    try:
        res = run_task(t, args)
    except Exception as e:  # one failed run is reported; the others go on
        return key(t), f"FAILED: {type(e).__name__}: {e}"
    study.save_run(path, res)
    return key(t), f"{res['wall_s']:.0f} s"


# ---------------------------------------------------------------------------------------------
# The report: tables from the JSON files, nothing else


def paired_diff(a: list[float], b: list[float]) -> str:
    d = [x - y for x, y in zip(a, b)]
    return study.mean_2sd(d) if d else "-"


def _ga(runs, net, scheme, enc, fitness, rejudge=None):
    """Runs of one arm; ``rejudge`` None: elitism's main arm (re-judged), the others' only one."""
    if rejudge is None:
        rejudge = scheme == "ga-elitism"
    rs = [r for r in runs.values() if r["task"]["kind"] == "ga" and r["task"]["net"] == net
          and r["task"]["scheme"] == scheme and r["task"]["encoding"] == enc and str(r["task"]["fitness"]) == str(fitness)
          and bool(r["task"].get("rejudge")) == rejudge]
    return sorted(rs, key=lambda r: r["task"]["seed"])


def _bp(runs, net, opt):
    rs = [r for r in runs.values() if r["task"]["kind"] == "backprop" and r["task"]["net"] == net
          and r["task"]["optimizer"] == opt]
    return sorted(rs, key=lambda r: r["task"]["seed"])


def tables(runs: dict[str, dict]) -> str:
    """The page's tables (markdown), a pure function of the run files."""
    lines = []
    lines += ["| net | run | iterations | children | seeds | initial fittest: monitor acc. | final fittest: fitness "
              "| final fittest: monitor acc. | population mean monitor acc. | test acc. of final fittest |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    arms = []
    nets = sorted({r["task"]["net"] for r in runs.values()}, key=lambda n: n != "mnist-table2")
    for net in nets:
        for scheme in SCHEMES:
            for enc in ENCODINGS:
                fits = sorted({str(r["task"]["fitness"]) for r in runs.values() if r["task"]["kind"] == "ga"},
                              key=lambda f: f != "32")
                for f in fits:
                    for rj in ((True, False) if scheme == "ga-elitism" else (False,)):
                        rs = _ga(runs, net, scheme, enc, f, rj)
                        if rs:
                            how = ("batch of 32" if f == "32" else f) + (", elites re-judged" if rj else
                                                                         (", elites keep their batch's fitness" if scheme == "ga-elitism" else ""))
                            arms.append((net, f"{scheme}, {enc}, fitness {how}", rs))
        for opt in ("sgd", "adam"):
            rs = _bp(runs, net, opt)
            if rs:
                arms.append((net, f"{opt.upper() if opt == 'sgd' else 'Adam'} (lr {rs[0]['lr']}), fittest initial member", rs))
    for net, name, rs in arms:
        if rs[0]["task"]["kind"] == "ga":
            lines.append(f"| {net} | {name} | {rs[0]['iterations']:,} | {rs[0]['children']:,} | {len(rs)} "
                         f"| {study.mean_2sd([r['points'][0][5] for r in rs])} | {study.mean_2sd([r['points'][-1][3] for r in rs])} "
                         f"| {study.mean_2sd([r['final_monitor_of_fittest'] for r in rs])} "
                         f"| {study.mean_2sd([r['final_monitor_mean'] for r in rs])} "
                         f"| {study.mean_2sd([r['test_accuracy_of_fittest'] for r in rs])} |")
        else:
            lines.append(f"| {net} | {name} | {rs[0]['iterations']:,} | | {len(rs)} "
                         f"| {study.mean_2sd([r['points'][0][2] for r in rs])} | "
                         f"| {study.mean_2sd([r['points'][-1][2] for r in rs])} | "
                         f"| {study.mean_2sd([r['test_accuracy'] for r in rs])} |")
    comps = []
    for scheme in SCHEMES:
        comps.append((f"Accordion − traditional, {scheme}", "mnist-table2",
                      _ga(runs, "mnist-table2", scheme, "accordion", "32"), _ga(runs, "mnist-table2", scheme, "traditional", "32")))
    comps.append(("elitism − steady state (Accordion)", "mnist-table2",
                  _ga(runs, "mnist-table2", "ga-elitism", "accordion", "32"), _ga(runs, "mnist-table2", "ga-steady-state", "accordion", "32")))
    comps.append(("elitism − generational (Accordion)", "mnist-table2",
                  _ga(runs, "mnist-table2", "ga-elitism", "accordion", "32"), _ga(runs, "mnist-table2", "ga-generational", "accordion", "32")))
    comps.append(("elites re-judged − elites keep their batch's fitness (elitism, Accordion)", "mnist-table2",
                  _ga(runs, "mnist-table2", "ga-elitism", "accordion", "32"),
                  _ga(runs, "mnist-table2", "ga-elitism", "accordion", "32", rejudge=False)))
    subsets = sorted({str(r["task"]["fitness"]) for r in runs.values() if str(r["task"].get("fitness", "32")).startswith("subset")})
    for s in subsets:
        comps.append((f"fitness on a fixed {s} − on batches of 32 (steady state, Accordion)", "mnist-table2",
                      _ga(runs, "mnist-table2", "ga-steady-state", "accordion", s), _ga(runs, "mnist-table2", "ga-steady-state", "accordion", "32")))
    for net in nets:
        best_ga = _ga(runs, net, "ga-elitism", "accordion", "32")
        for opt in ("sgd", "adam"):
            comps.append((f"{opt.upper() if opt == 'sgd' else 'Adam'} − elitism (Accordion)", net, _bp(runs, net, opt), best_ga))
    lines += _early(runs, nets)
    lines += ["", "Paired differences (same seed: same initial population, batches, split), test accuracy "
              "of the final fittest, percentage points, mean ± 2 sd over seeds:", "",
              "| comparison | net | difference | seeds |", "|---|---|---|---|"]
    for name, net, a, b in comps:
        if not a or not b:
            continue
        by_seed_b = {r["task"]["seed"]: r for r in b}
        pairs = [(r, by_seed_b[r["task"]["seed"]]) for r in a if r["task"]["seed"] in by_seed_b]
        acc = lambda r: r.get("test_accuracy_of_fittest", r.get("test_accuracy"))  # noqa: E731
        lines.append(f"| {name} | {net} | {paired_diff([acc(x) for x, _ in pairs], [acc(y) for _, y in pairs])} | {len(pairs)} |")
    return "\n".join(lines) + "\n"


def _at(points: list, it: int, col: int) -> float | None:
    """Column ``col`` of the last checkpoint at or before iteration ``it`` (None: none yet, or
    the run ended before ``it``)."""
    if not points or points[-1][0] < it:
        return None
    return [p for p in points if p[0] <= it][-1][col]


def _early(runs: dict[str, dict], nets: list[str]) -> list[str]:
    """The paper's early-iterations claim (Figure 16): monitor accuracy of the fittest member
    (GA) or of the trained model (backpropagation) after k iterations, on the same axis."""
    marks = (10, 100, 1000, 10000)
    out = ["", "Early iterations (Figure 16's claim): monitor accuracy (%) after k iterations, mean ± 2 sd "
           "over seeds (the last checkpoint at or before k; GA: its fittest member):", "",
           "| net | run | " + " | ".join(f"k = {k:,}" for k in marks) + " |", "|---|---|" + "---|" * len(marks)]
    for net in nets:
        arms = [(f"{s}, Accordion", _ga(runs, net, s, "accordion", "32"), 5) for s in SCHEMES]
        arms += [(o.upper() if o == "sgd" else "Adam", _bp(runs, net, o), 2) for o in ("sgd", "adam")]
        for name, rs, col in arms:
            if not rs:
                continue
            cells = []
            for k in marks:
                vals = [v for r in rs if (v := _at(r["points"], k, col)) is not None]
                cells.append(study.mean_2sd(vals) if len(vals) == len(rs) else "-")
            out.append(f"| {net} | {name} | " + " | ".join(cells) + " |")
    return out


def plots(runs: dict[str, dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    colors = {"ga-steady-state": "tab:blue", "ga-elitism": "tab:green", "ga-generational": "tab:orange"}
    for net in sorted({r["task"]["net"] for r in runs.values()}):
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
        for ax, xi, xlabel in ((axes[0], 0, "iterations (batches of 32; GA generational: generations)"),
                               (axes[1], 2, "seconds (checkpoint evaluations excluded)")):
            for scheme, c in colors.items():
                for enc, ls in (("accordion", "-"), ("traditional", ":")):
                    for k, r in enumerate(_ga(runs, net, scheme, enc, "32")):
                        pts = [p for p in r["points"] if p[xi] > 0]
                        ax.plot([p[xi] for p in pts], [p[5] for p in pts], ls, color=c, alpha=0.7,
                                label=f"{scheme} {enc}" if k == 0 else None)
            for opt, c in (("sgd", "grey"), ("adam", "black")):
                for k, r in enumerate(_bp(runs, net, opt)):
                    pts = [p for p in r["points"] if p[0 if xi == 0 else 1] > 0]
                    ax.plot([p[0 if xi == 0 else 1] for p in pts], [p[2] for p in pts], "-", color=c, alpha=0.7,
                            label=opt.upper() if k == 0 and opt == "sgd" else ("Adam" if k == 0 else None))
            ax.set(xscale="log", xlabel=xlabel, ylabel="monitor accuracy of the fittest member")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"seed 003 on Fashion-MNIST, {net}: every seed's run")
        fig.tight_layout()
        name = f"curves-{net}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        made.append(name)
    return made


BEGIN, END = "<!-- tables: generated by experiments/seed003_weights_ga.py --report -->", "<!-- end of tables -->"


def report(out: Path) -> None:
    """Write the tables into OUT/README.md between its markers (the reading around them is
    prose) and draw the figures, from OUT/runs/*.json only."""
    study.report(out, BEGIN, END, tables, plots)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/seed003"))
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: lse's search path)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="initial-population seeds (one repeat each)")
    p.add_argument("--population", type=int, default=100, help="the paper's pop_size")
    p.add_argument("--iterations", type=int, default=10_000,
                   help="steady state and backpropagation: iterations (one batch of 32 each)")
    p.add_argument("--generations", type=int, default=1_000, help="generational and elitism (MNIST net): iterations")
    p.add_argument("--lenet-generations", type=int, default=300, help="elitism on the LeNet: iterations")
    p.add_argument("--subset", type=int, default=256, help="fixed fitness subset (validation split) of the subset arm")
    p.add_argument("--monitor", type=int, default=2000, help="images at the end of the training split, only reported")
    p.add_argument("--checkpoints", type=int, default=30)
    p.add_argument("--sgd-lr", type=float, default=0.01, help="Keras' SGD default (the paper gives none)")
    p.add_argument("--adam-lr", type=float, default=0.001, help="Keras' Adam default")
    p.add_argument("--device", default="cpu", help="cpu or cuda (a GPU judges the whole population in one pass)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one process each)")
    p.add_argument("--only", default=None, help="run only tasks whose key matches this regular expression")
    p.add_argument("--skip", default=None, help="skip tasks whose key matches this regular expression")
    p.add_argument("--force", action="store_true", help="rerun tasks whose JSON exists")
    p.add_argument("--report", action="store_true", help="only write tables.md and the plots from OUT/runs")
    args = p.parse_args(argv)
    if args.report:
        report(args.out)
        return 0
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    todo = study.pending(plan(args), key, args.out, only=args.only, skip=args.skip, force=args.force)
    # the longest first, so that the parallel jobs end together
    todo.sort(key=lambda t: -(t["iterations"] * (100 if t.get("scheme") in ("ga-elitism", "ga-generational") else 1)))
    print(f"{len(todo)} runs to do", flush=True)
    failed = study.run_all(_worker, [(t, args) for t in todo], args.jobs)
    report(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
