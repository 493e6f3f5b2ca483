"""Table I of seed 002 (PyCortex) on Fashion-MNIST, scaled down: runs with and without
speciation, repeated, then the paper's columns -- highest fitness, average fitness and the
average fitness of new offspring before training (BP) -- measured on the final generation,
beside the paper's numbers, with figures: species over time (stacked), best and average
fitness per generation, offspring fitness before vs after training, parameter counts.

    python experiments/pycortex_table1.py --repeats 3 --initial 16 --limit 24 --generations 6

Each run is a real launch (python -m lse.launch --algorithm pycortex, one worker) on the real
data set.  Steady state has no generations; here generation 0 is the initial ecosystem and each
later generation is the next ``limit`` births (one training per network at the limit: what a
PyCortex generation does), read from the records.  Fitness is VALIDATION accuracy (the paper
used the test set; here the test split stays unseen).  Writes docs/pycortex.md (table and
reading) and docs/figures/pycortex-*.png; --analyse-only re-reads existing populations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: Table I, Fashion-MNIST rows: best over 10 runs, (mean, s.d.) after 100 generations, test accuracy
PAPER = {
    True: {"highest": (89.49, 88.54, 0.70), "average": (87.89, 85.3, 1.4), "before": (88.18, 82.0, 4.3)},
    False: {"highest": (88.88, 88.44, 0.36), "average": (85.53, 83.3, 1.1), "before": (83.61, 64.9, 7.8)},
}


def launch(pop: Path, speciation: bool, seed: int, a) -> float:
    births = a.initial + a.generations * a.limit
    cmd = [sys.executable, "-m", "lse.launch", "--pop", str(pop), "--algorithm", "pycortex",
           "-o", f"speciation={str(speciation).lower()}", "-o", f"ecosystem_limit={a.limit}",
           "-o", f"initial_species={a.species}", "--population-size", str(a.initial),
           "--max-individuals", str(births), "--workers", "1", "--threads", "1", "--seed", str(seed),
           "--validation-size", str(a.validation_size), "--no-progress"]
    if a.data_dir:
        cmd += ["--data-dir", a.data_dir]
    t0 = time.time()
    subprocess.run(["nice", "-n", "10", *cmd], check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stdout=subprocess.DEVNULL)
    return time.time() - t0


def generations(records: list, initial: int, limit: int) -> list[dict]:
    """Per generation: the ecosystem at its end (alive, superseded versions excluded), its
    highest and average fitness, species counts, parameter counts, and the offspring born in
    it with their fitness before and after training."""
    born = sorted((r for r in records), key=lambda r: r.id)
    bounds = [initial] + list(range(initial + limit, len(born) + 1, limit))
    out = []
    for g, end in enumerate(bounds):
        if end > len(born):
            break
        now = born[:end]
        t = now[-1].born_at or 0.0
        ids = {r.id for r in now}
        continued = {r.extra.get("continues") for r in now if r.extra.get("continues")}
        alive = [r for r in now if r.fitness is not None and r.id not in continued
                 and (r.killed_at is None or r.killed_at > t)]
        start = bounds[g - 1] if g else 0
        new = [r for r in born[start:end] if r.extra.get("step") == "offspring" and r.fitness is not None]
        species: dict[str, int] = {}
        for r in alive:
            species[r.species or "?"] = species.get(r.species or "?", 0) + 1
        best = max(alive, key=lambda r: r.fitness)
        out.append({
            "generation": g, "births": end, "size": len(alive),
            "highest": best.fitness, "average": statistics.fmean(r.fitness for r in alive),
            "before": _mean_before(new),
            "after": statistics.fmean(r.fitness for r in new) if new else None,
            # the paper's before-BP figure is for crossover offspring; a single-parent offspring
            # (no mate found) is a mutated clone that keeps its parent's weights: split them
            **{f"before_{kind}": _mean_before([r for r in new if bool(r.extra.get("crossover")) == (kind == "crossover")])
               for kind in ("crossover", "clone")},
            "offspring_crossover": sum(1 for r in new if r.extra.get("crossover")),
            "offspring_clone": sum(1 for r in new if not r.extra.get("crossover")),
            "offspring": [(r.objectives.get("val_accuracy_before_training"), r.fitness, bool(r.extra.get("crossover")))
                          for r in new],
            "species": species, "params_mean": statistics.fmean(r.params or 0 for r in alive),
            "params_best": best.params, "best_genome": best.dna,
        })
        assert ids  # noqa
    return out


def _mean_before(records: list) -> float | None:
    vals = [r.objectives["val_accuracy_before_training"] for r in records if "val_accuracy_before_training" in r.objectives]
    return statistics.fmean(vals) if vals else None


def summary(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    return max(values), statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def figures(runs: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, spec in zip(axes, (True, False)):
        gens = runs[spec][0]
        keys = sorted({k for g in gens for k in g["species"]})
        xs = [g["generation"] for g in gens]
        ax.stackplot(xs, [[g["species"].get(k, 0) for g in gens] for k in keys], labels=keys)
        ax.set_title(f"{'with' if spec else 'without'} speciation (run 1): networks per species")
        ax.set_xlabel("generation")
        if len(keys) <= 12:
            ax.legend(fontsize=6, loc="upper left")
    axes[0].set_ylabel("networks")
    fig.tight_layout()
    fig.savefig(out / "pycortex-species.png", dpi=110)
    names.append("pycortex-species.png")

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for spec, colour in ((True, "C0"), (False, "C3")):
        label = "speciation" if spec else "no speciation"
        for i, gens in enumerate(runs[spec]):
            xs = [g["generation"] for g in gens]
            kw = dict(color=colour, alpha=0.8, label=label if i == 0 else None)
            axes[0].plot(xs, [100 * g["highest"] for g in gens], **kw)
            axes[0].plot(xs, [100 * g["average"] for g in gens], ls="--", color=colour, alpha=0.6)
            for cross, marker in ((True, "o"), (False, "x")):  # crossover offspring; single-parent clones
                pts = [(b, f) for g in gens for b, f, c in g["offspring"] if b is not None and c == cross]
                axes[1].scatter([100 * b for b, _ in pts], [100 * f for _, f in pts], s=8, color=colour, alpha=0.5,
                                marker=marker, label=f"{label}, {'crossover' if cross else 'clones'}" if i == 0 else None)
            axes[2].plot(xs, [g["params_mean"] for g in gens], color=colour, alpha=0.8, label=label if i == 0 else None)
            axes[2].plot(xs, [g["params_best"] for g in gens], color=colour, ls=":", alpha=0.8)
    axes[0].set(title="highest (solid) and average (dashed) fitness", xlabel="generation", ylabel="validation accuracy %")
    lim = [0, 100]
    axes[1].plot(lim, lim, color="grey", lw=0.8)
    axes[1].set(title="offspring (o crossover, x clone): before vs after training", xlabel="before (inherited weights) %", ylabel="after one epoch on 10% %")
    axes[2].set(title="parameters: mean (solid), champion (dotted)", xlabel="generation", ylabel="parameters", yscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pycortex-fitness.png", dpi=110)
    names.append("pycortex-fitness.png")
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--initial", type=int, default=16, help="initial ecosystem (paper: 64)")
    p.add_argument("--limit", type=int, default=24, help="ecosystem limit (paper: 111)")
    p.add_argument("--species", type=int, default=8, help="initial species (paper: 8)")
    p.add_argument("--generations", type=int, default=6, help="generations after the initial one (paper: 100)")
    p.add_argument("--validation-size", type=int, default=5000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--pops", default=str(REPO / "runs" / "pycortex"), help="where the populations go")
    p.add_argument("--docs", default=str(REPO / "docs"))
    p.add_argument("--analyse-only", action="store_true")
    a = p.parse_args(argv)
    from lse.store import Store

    pops = Path(a.pops)
    pops.mkdir(parents=True, exist_ok=True)
    runs: dict[bool, list] = {True: [], False: []}
    seconds: dict[bool, list] = {True: [], False: []}
    from concurrent.futures import ThreadPoolExecutor

    for r in range(a.repeats):
        todo = {spec: pops / f"{'spec' if spec else 'nospec'}-{r}" for spec in (True, False)}
        if not a.analyse_only:  # the two modes of one repeat side by side, one core each
            with ThreadPoolExecutor(2) as ex:
                done = {spec: ex.submit(launch, pop, spec, r, a) for spec, pop in todo.items()}
            for spec, fut in done.items():
                seconds[spec].append(fut.result())
        for spec, pop in todo.items():
            runs[spec].append(generations(Store(pop).open().records(), a.initial, a.limit))
    docs = Path(a.docs)
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    figures(runs, docs / "figures")
    rows = []
    measured = {}
    for spec in (True, False):
        finals = [gens[-1] for gens in runs[spec]]
        m = {k: summary([100 * f[k] for f in finals if f.get(k) is not None])
             for k in ("highest", "average", "before", "before_crossover", "before_clone")}
        measured[spec] = m
        gen = finals[0]["generation"]
        cell = lambda t: "-" if t is None else f"{t[0]:.2f}% ({t[1]:.2f} ± {t[2]:.2f})"  # noqa: E731
        pc = PAPER[spec]
        rows.append(f"| Fashion-MNIST {'with' if spec else 'no'} speciation, **here** (validation, generation {gen}) | "
                    f"{cell(m['highest'])} | {cell(m['average'])} | {cell(m['before'])} | {cell(m['before_crossover'])} "
                    f"({sum(f.get('offspring_crossover', 0) for f in finals)}) | {cell(m['before_clone'])} "
                    f"({sum(f.get('offspring_clone', 0) for f in finals)}) |")
        rows.append(f"| Fashion-MNIST {'with' if spec else 'no'} speciation, paper (test, generation 100) | "
                    f"{cell(pc['highest'])} | {cell(pc['average'])} | {cell(pc['before'])} | - | - |")
    per_gen = []
    for spec in (True, False):
        for i, gens in enumerate(runs[spec]):
            cells = []
            for g in gens:
                before = "-" if g["before"] is None else f"{100 * g['before']:.1f}"
                cells.append(f"{100 * g['highest']:.1f} / {100 * g['average']:.1f} / {before}")
            per_gen.append(f"| {'yes' if spec else 'no'} | {i + 1} | " + " | ".join(cells) + " |")
    ngen = len(runs[True][0])
    species_final = {spec: [len(g[-1]["species"]) for g in runs[spec]] for spec in (True, False)}
    params_final = {spec: [round(g[-1]["params_best"]) for g in runs[spec]] for spec in (True, False)}
    result = {"args": vars(a), "seconds": seconds, "measured": {str(k): v for k, v in measured.items()},
              "species_final": {str(k): v for k, v in species_final.items()},
              "params_best_final": {str(k): v for k, v in params_final.items()},
              "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    (docs / "pycortex-table1.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print("\n".join(rows))
    print(json.dumps(result, default=str)[:2000])
    (docs / "pycortex-table1.md").write_text(
        "| experiment | highest fitness | average fitness | average offspring fitness before BP "
        "| of which crossover offspring (n: the runs' last generations) | of which single-parent clones (n) |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\nPer generation (highest / average / offspring before BP, %):\n\n"
        + "| speciation | run | " + " | ".join(f"g{i}" for i in range(ngen)) + " |\n|---|---|"
        + "---|" * ngen + "\n" + "\n".join(per_gen) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
