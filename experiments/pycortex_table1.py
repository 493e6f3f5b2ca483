"""Seed 002 reproduced: PyCortex's Table I on Fashion-MNIST at the paper's ecosystem (64 -> 111,
8 species), paired and repeated, and the paper's generation loop against lse's steady state
(issue 32).

Arms, each run once per seed (one real `python -m lse.launch --algorithm pycortex`, one worker,
one thread):

    generational-speciation      the paper's loop (-o loop=generational), speciation on
    generational-no-speciation   the same without speciation (Table I's second row)
    steady-state-speciation      lse's steady state, speciation on, stopped at the same births

    python experiments/pycortex_table1.py --out docs/pycortex --seeds 0 1 2 3 4 --generations 20 --jobs 2
    python experiments/pycortex_table1.py --out docs/pycortex --report

A generational run stops after ``--generations`` generations past the initial one: with the
paper's sizes 64, 96, 111, 111... births.  A steady-state "generation" is the same number of
births, read from the records, so both loops get the same trainings.  Runs of one seed start
from one initial ecosystem where the arms' initial genomes agree (speciation on: the same
founders; the worker draws initial individual k from (seed, k)); the JSON carries a hash of it.
Fitness is VALIDATION accuracy (the paper used the test set, which here stays unseen by the
search); the test accuracy of each run's best-by-validation network is read once, for the report.

Runs are written one JSON each under OUT/runs/ as they finish (an interrupted invocation
resumes; --force reruns).  --report writes OUT/README.md's tables (between its markers) and the
figures from those files only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "experiments"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import _study as study  # noqa: E402  (after the path it lives on)

ARMS = ("generational-speciation", "generational-no-speciation", "steady-state-speciation")

#: Table I, Fashion-MNIST rows: best over 10 runs, (mean, s.d.) after 100 generations, TEST accuracy
PAPER = {
    "speciation": {"highest": (89.49, 88.54, 0.70), "average": (87.89, 85.3, 1.4), "before": (88.18, 82.0, 4.3)},
    "no-speciation": {"highest": (88.88, 88.44, 0.36), "average": (85.53, 83.3, 1.1), "before": (83.61, 64.9, 7.8)},
}


# ---------------------------------------------------------------------------------------------
# The study

def schedule(initial: int, limit: int, generations: int, offspring_fraction: float = 1 / 3) -> list[int]:
    """Trainings of generations 0..G of the generational loop when no child fails: what
    lse.algorithms.pycortex.PyCortex.replace decides (survivors + the next offspring)."""
    from lse.algorithms import make_algorithm
    from lse.config import ExperimentConfig

    algo = make_algorithm(ExperimentConfig(population_size=initial, algorithm={
        "name": "pycortex", "options": {"loop": "generational", "ecosystem_limit": limit,
                                        "offspring_fraction": offspring_fraction}}))
    sizes = [initial]
    for _ in range(generations):
        pool = sizes[-1]
        o = algo.offspring_count(pool)
        sizes.append(min(pool, max(0, limit - o)) + o)
    return sizes


def plan(args) -> list[dict]:
    return [{"arm": arm, "seed": s, "initial": args.initial, "limit": args.limit, "species": args.species,
             "generations": args.generations, "validation_size": args.validation_size}
            for s in args.seeds for arm in ARMS]


def key(t: dict) -> str:
    return f"{t['arm']}_seed{t['seed']}"


def run_task(t: dict, args) -> dict:
    """Launch one run, then read it: per generation the ecosystem at its end and the offspring
    bred in it."""
    from lse.core.records import id_time
    from lse.store import Store

    pop = args.pops / key(t)
    sizes = schedule(t["initial"], t["limit"], t["generations"])
    if pop.exists() and not args.reuse:
        shutil.rmtree(pop)
    pop.parent.mkdir(parents=True, exist_ok=True)
    loop, speciation = t["arm"].split("-", 1)[0], not t["arm"].endswith("-no-speciation")
    loop = "generational" if loop == "generational" else "steady-state"
    cmd = [sys.executable, "-m", "lse.launch", "--pop", str(pop), "--algorithm", "pycortex",
           "-o", f"loop={loop}", "-o", f"speciation={str(speciation).lower()}", "-o", f"ecosystem_limit={t['limit']}",
           "-o", f"initial_species={t['species']}", "--population-size", str(t["initial"]),
           "--max-individuals", str(sum(sizes)), "--workers", "1", "--threads", "1", "--seed", str(t["seed"]),
           "--validation-size", str(t["validation_size"]), "--no-progress", "--device", args.device]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if not (args.reuse and pop.exists() and len(Store(pop).open().records()) >= sum(sizes)):
        # a fresh run, or (--reuse) an interrupted one resumed by the same launch
        with open(pop.parent / f"{key(t)}.launch.log", "a") as log:
            subprocess.run(["nice", "-n", "10", *cmd], check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    store = Store(pop).open()
    records = sorted(store.records(), key=lambda r: r.id)
    wall = max(r.born_at or 0.0 for r in records) - id_time(records[0].id)  # first training to last birth
    gens = read_generations(records, sizes)
    initial = sorted((r.extra.get("seed"), json.dumps(r.dna, sort_keys=True)) for r in records if not r.parents)
    from lse.reports.report import make_report

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # its tables: in the report folder
        summary = make_report([str(pop)], args.pops / f"{key(t)}.report", labels=[key(t)])
    best = summary["experiments"][0]["best"] or {}
    return {"task": t, "schedule": sizes, "births": len(records), "wall_s": wall,
            "failed": sum(r.fitness is None for r in records),
            "initial_hash": hashlib.sha256(json.dumps(initial).encode()).hexdigest()[:16],
            "best": {k: best.get(k) for k in ("val_accuracy", "test_accuracy", "params", "architecture")},
            "generations": gens, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.device}",
            "command": " ".join(cmd[1:])}


def read_generations(records: list, sizes: list[int]) -> list[dict]:
    """Generation g ends at birth sum(sizes[:g+1]) (both loops: the same trainings).  The
    ecosystem at its end: alive then, superseded versions excluded.  Its offspring: the
    crossover/mutation children born in it, before and after their one epoch."""
    out, end = [], 0
    for g, n in enumerate(sizes):
        start, end = end, end + n
        if end > len(records):
            break
        now = records[:end]
        t = now[-1].born_at or 0.0
        continued = {r.extra.get("continues") for r in now if r.extra.get("continues")}
        alive = [r for r in now if r.fitness is not None and r.id not in continued
                 and (r.killed_at is None or r.killed_at > t)]
        new = [r for r in records[start:end] if r.extra.get("step") == "offspring" and r.fitness is not None]
        species: dict[str, int] = {}
        for r in alive:
            species[r.species or "?"] = species.get(r.species or "?", 0) + 1
        best = max(alive, key=lambda r: r.fitness)
        out.append({
            "generation": g, "births": end, "size": len(alive), "species": species,
            "highest": best.fitness, "average": statistics.fmean(r.fitness for r in alive),
            "params_mean": statistics.fmean(r.params or 0 for r in alive), "params_best": best.params,
            # (before BP, after one epoch, crossover?) of each offspring: the paper's before-BP
            # figure is for crossover offspring; one without a mate is a mutated clone
            "offspring": [(r.objectives.get("val_accuracy_before_training"), r.fitness, bool(r.extra.get("crossover")))
                          for r in new],
        })
    return out


def _worker(payload):
    t, args = payload
    path = args.out / "runs" / f"{key(t)}.json"
    try:
        res = run_task(t, args)
    except Exception as e:  # one failed run is reported; the others go on
        return key(t), f"FAILED: {type(e).__name__}: {e}"
    study.save_run(path, res)
    return key(t), f"{res['wall_s']:.0f} s, {res['births']} births"


# ---------------------------------------------------------------------------------------------
# The report: tables from the JSON files, nothing else

def before(g: dict, kind: str | None = None) -> float | None:
    """Mean before-BP fitness of generation g's offspring (kind: "crossover", "clone" or all)."""
    vals = [b for b, _, c in g["offspring"] if b is not None and (kind is None or c == (kind == "crossover"))]
    return statistics.fmean(vals) if vals else None


def reading(d: list[float]) -> str:
    """Shows when the mean paired difference is more than 2 standard errors from 0."""
    if len(d) < 2:
        return "n < 2"
    m, se = statistics.fmean(d), statistics.stdev(d) / len(d) ** 0.5
    return "**shows** (> 0 by more than 2 s.e.)" if m > 2 * se else (
        "**reversed** (< 0 by more than 2 s.e.)" if m < -2 * se else "not shown (within 2 s.e. of 0)")


def common_generation(runs: dict[str, dict]) -> int:
    return min(len(r["generations"]) for r in runs.values()) - 1


def _arm(runs: dict[str, dict], arm: str) -> dict[int, dict]:
    return {r["task"]["seed"]: r for r in runs.values() if r["task"]["arm"] == arm}


def _metric(r: dict, g: int, what: str) -> float | None:
    gen = r["generations"][g]
    return before(gen, what.split(":")[1] if ":" in what else None) if what.startswith("before") else (
        r["best"]["test_accuracy"] if what == "test" else gen[what])


def tables(runs: dict[str, dict]) -> str:
    g = common_generation(runs)
    metrics = [("highest", "highest fitness"), ("average", "average fitness"),
               ("before", "offspring before BP"), ("before:crossover", "of which crossover offspring"),
               ("before:clone", "of which single-parent clones")]
    lines = [f"Generation {g} of every run (its ecosystem at the end of generation {g}; the offspring bred in it). "
             "Validation accuracy %, mean ± 2σ over the seeds; the paper: test accuracy, generation 100, "
             "best (mean ± s.d.) over 10 runs.", "",
             "| arm | seeds | " + " | ".join(t for _, t in metrics) + " | test acc. of the run's best network | births |",
             "|---|---|" + "---|" * (len(metrics) + 2)]
    for arm in ARMS:
        by = _arm(runs, arm)
        if not by:
            continue
        cells = [study.mean_2sd([v for r in by.values() if (v := _metric(r, g, m)) is not None]) for m, _ in metrics]
        lines.append(f"| {arm} | {', '.join(map(str, sorted(by)))} | " + " | ".join(cells)
                     + f" | {study.mean_2sd([r['best']['test_accuracy'] for r in by.values()])} | "
                     + f"{statistics.fmean(r['generations'][g]['births'] for r in by.values()):.0f} |")
    for name, p in PAPER.items():
        lines.append(f"| paper, {name} | 10 | " + " | ".join(f"{p[m][0]:.2f} ({p[m][1]:.1f} ± {p[m][2]:.1f})"
                                                            for m in ("highest", "average", "before")) + " | - | - | - | - |")
    lines += ["", "Paired by seed (points; mean ± 2σ of the per-seed differences):", "",
              "| comparison | metric | difference | per seed | reading |", "|---|---|---|---|---|"]
    pairs = [("speciation − none (paper: +0.1 highest, +2.0 average, +17.1 before BP)",
              "generational-speciation", "generational-no-speciation"),
             ("generational − steady state (lse's stand-in for the paper's loop)",
              "generational-speciation", "steady-state-speciation")]
    for label, a, b in pairs:
        A, B = _arm(runs, a), _arm(runs, b)
        seeds = sorted(set(A) & set(B))
        for m, title in metrics[:3] + [("test", "test acc. of the best network")]:
            d = [x - y for s in seeds if (x := _metric(A[s], g, m)) is not None and (y := _metric(B[s], g, m)) is not None]
            lines.append(f"| {label} | {title} | {study.mean_2sd(d)} | {', '.join(f'{100 * x:+.1f}' for x in d)} | {reading(d)} |")
    lines += ["", "Per generation, mean over the seeds (highest / average / offspring before BP, %):", "",
              "| arm | " + " | ".join(f"g{i}" for i in range(g + 1)) + " |", "|---|" + "---|" * (g + 1)]
    for arm in ARMS:
        by = list(_arm(runs, arm).values())
        if not by:
            continue
        cells = []
        for i in range(g + 1):
            h, a = (statistics.fmean(r["generations"][i][k] for r in by) for k in ("highest", "average"))
            b = [v for r in by if (v := before(r["generations"][i])) is not None]
            cells.append(f"{100 * h:.1f} / {100 * a:.1f} / " + (f"{100 * statistics.fmean(b):.1f}" if b else "-"))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Each run (generation %d):" % g, "",
              "| run | initial ecosystem (hash) | highest | average | species | params: mean / champion "
              "| offspring: crossover / clones | failed | wall |", "|---|---|---|---|---|---|---|---|---|"]
    for k, r in sorted(runs.items()):
        gen = r["generations"][g]
        cross = sum(1 for _, _, c in gen["offspring"] if c)
        lines.append(f"| {k} | {r['initial_hash']} | {100 * gen['highest']:.1f} | {100 * gen['average']:.1f} | "
                     f"{len(gen['species'])} | {gen['params_mean']:,.0f} / {gen['params_best']:,} | "
                     f"{cross} / {len(gen['offspring']) - cross} | {r['failed']} | {r['wall_s'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def plots(runs: dict[str, dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(ARMS, ("C0", "C3", "C2")))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for arm in ARMS:
        by = list(_arm(runs, arm).values())
        if not by:
            continue
        n = min(len(r["generations"]) for r in by)
        xs = list(range(n))
        for ax, k in zip(axes[:2], ("highest", "average")):
            ys = [[100 * r["generations"][i][k] for r in by] for i in xs]
            m = [statistics.fmean(y) for y in ys]
            s = [2 * statistics.stdev(y) if len(y) > 1 else 0.0 for y in ys]
            ax.plot(xs, m, color=colours[arm], label=arm)
            ax.fill_between(xs, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=colours[arm], alpha=0.2)
        for cross, marker in ((True, "o"), (False, "x")):
            pts = [(b, f) for r in by for g in r["generations"] for b, f, c in g["offspring"] if b is not None and c == cross]
            axes[2].scatter([100 * b for b, _ in pts], [100 * f for _, f in pts], s=5, color=colours[arm], alpha=0.35,
                            marker=marker, label=f"{arm}, {'crossover' if cross else 'clones'}")
    axes[0].set(title="highest fitness (mean ± 2σ over seeds)", xlabel="generation", ylabel="validation accuracy %")
    axes[1].set(title="average fitness of the ecosystem", xlabel="generation")
    axes[2].plot([0, 100], [0, 100], color="grey", lw=0.8)
    axes[2].set(title="offspring: before vs after their epoch", xlabel="before BP (inherited weights) %",
                ylabel="after one epoch on 10% %")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "pycortex-fitness.png", dpi=110)
    plt.close(fig)
    return ["pycortex-fitness.png"]


BEGIN, END = "<!-- tables: generated by experiments/pycortex_table1.py --report -->", "<!-- end of tables -->"


def report(out: Path) -> None:
    """Write the tables into OUT/README.md between its markers and draw the figure, from
    OUT/runs/*.json only."""
    study.report(out, BEGIN, END, tables, plots)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/pycortex"))
    p.add_argument("--pops", type=Path, default=ROOT / "experiments" / "out" / "pycortex",
                   help="where the populations go (large, not committed)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: lse's search path)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--initial", type=int, default=64, help="initial ecosystem (paper: 64)")
    p.add_argument("--limit", type=int, default=111, help="ecosystem limit (paper: 111)")
    p.add_argument("--species", type=int, default=8, help="initial species (paper: 8)")
    p.add_argument("--generations", type=int, default=20, help="generations after the initial one (paper: 100)")
    p.add_argument("--validation-size", type=int, default=5000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one worker, one thread each)")
    p.add_argument("--only", default=None, help="run only tasks whose key matches this regular expression")
    p.add_argument("--force", action="store_true", help="rerun tasks whose JSON exists")
    p.add_argument("--reuse", action="store_true",
                   help="a run whose population exists is read (complete) or resumed (interrupted), not started again")
    p.add_argument("--report", action="store_true", help="only write OUT/README.md's tables and the figure")
    args = p.parse_args(argv)
    if args.report:
        report(args.out)
        return 0
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    todo = study.pending(plan(args), key, args.out, only=args.only, force=args.force)
    print(f"{len(todo)} runs to do", flush=True)
    failed = study.run_all(_worker, [(t, args) for t in todo], args.jobs)
    report(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
