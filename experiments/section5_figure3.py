"""Figure 3 of Real et al. 2017 (section 5): final test accuracy of the individual with the best
validation accuracy, (left) against population size and (right) against training steps per
individual, every experiment given the same wall time, several repeats per point.

    python experiments/section5_figure3.py [--minutes 2.5] [--repeats 2]

Scale-downs (paper -> here): CIFAR-10 -> Fashion-MNIST (validation 2,000); population sizes
2 ... 1,000 -> 2 and 10 (left, 50 steps each; paper: 2,560 steps); steps per individual
256 ... 25,600 -> 10 and 100 (right, population 5; paper: population 1,000); 5 repeats ->
--repeats; days on 250 workers -> --minutes on 1 worker, two experiments at a time on a shared
2-core machine (so "equal wall time" is equal wall time under the same load, not equal CPU).

Writes experiments/out/section5-figure3/ (populations, report), docs/section5-figure3.json
(the numbers) and docs/figures/section5-figure3.png.
"""

from __future__ import annotations

import argparse

from _common import FIGURES, OUT, best_test, launch_all, report, save

POP_SIZES, POP_STEPS = (2, 10), 50
STEP_COUNTS, STEP_POP = (10, 100), 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.5, help="wall time of every experiment")
    ap.add_argument("--repeats", type=int, default=2, help="experiments per point (paper: 5)")
    a = ap.parse_args()
    base = OUT / "section5-figure3"
    hours = ["--max-hours", f"{a.minutes / 60:.6f}"]
    runs, points = [], []
    for r in range(a.repeats):
        for p in POP_SIZES:
            pop = base / f"pop{p}-r{r}"
            runs.append((pop, [*hours, "--population-size", str(p), "--steps", str(POP_STEPS), "--seed", str(r)]))
            points.append(("population size", p, pop))
        for t in STEP_COUNTS:
            pop = base / f"steps{t}-r{r}"
            runs.append((pop, [*hours, "--population-size", str(STEP_POP), "--steps", str(t), "--seed", str(r)]))
            points.append(("steps per individual", t, pop))
    launch_all(runs)
    s = report([p for _, _, p in points], [f"{axis}={x}" for axis, x, _ in points], base / "report")
    tests = best_test(s)
    rows = [{"axis": axis, "x": x, "pop": str(p), "best_test": t, "individuals": e["individuals"],
             "best_val": (e["best"] or {}).get("val_accuracy")}
            for (axis, x, p), t, e in zip(points, tests, s["experiments"])]
    for row in rows:
        print(row, flush=True)
    save("section5-figure3", {"minutes": a.minutes, "repeats": a.repeats, "rows": rows})
    plot(rows, FIGURES / "section5-figure3.png")


def plot(rows: list[dict], path, title: str = "Figure 3, scaled down: every circle one experiment, all given the same wall time") -> None:
    """Every experiment a circle; where a point has several, their mean with +-2 sigma (sample)."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    for ax, axis in zip(axes, ("population size", "steps per individual")):
        pts = [(r["x"], 100 * r["best_test"]) for r in rows if r["axis"] == axis and r["best_test"] is not None]
        ax.scatter([x for x, _ in pts], [y for _, y in pts], s=40, facecolors="none", edgecolors="#1f4e9c")
        ax.set_xscale("log")
        xs = sorted({x for x, _ in pts})
        for x in xs:
            ys = [y for px, y in pts if px == x]
            if len(ys) > 1:
                ax.errorbar([x], [statistics.fmean(ys)], yerr=[2 * statistics.stdev(ys)], fmt="_", color="#c0392b",
                            markersize=14, capsize=4)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(axis)
        ax.set_ylabel("test accuracy of the best by validation (%)")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
