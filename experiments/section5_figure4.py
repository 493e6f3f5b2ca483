"""Figure 4 of Real et al. 2017 (section 5): a trapped population escaping (top) under a period
of increased mutation rate and (bottom) under three consecutive weight resets.

    python experiments/section5_figure4.py [--minutes 6]

Scale-downs (paper -> here): CIFAR-10 -> Fashion-MNIST (validation 2,000 held out of the
training set); population 100 (burst) and 50 (resets) -> 10 and 5; 2,560 steps per individual
-> 20 (batch 50); 250 workers for days -> 1 worker for --minutes.  The burst is 5 mutations per
child over the middle third of the run (the paper does not state its rate); the resets come at
1/4, 2/4 and 3/4 of the run.  Both are given at launch (--mutation-burst, --weight-reset), the
same events `lse mutations` and `lse reset` write on a running experiment.

Writes experiments/out/section5-figure4/ (populations, reports), docs/section5-figure4.json
(the numbers), and copies the individuals
figures to docs/figures/section5-figure4-{burst,resets}.png.
"""

from __future__ import annotations

import argparse

from _common import OUT, best_test, copy_figure, launch_all, phase_stats, report, save

STEPS = 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=6.0, help="wall time of each experiment (both run at once)")
    a = ap.parse_args()
    m = a.minutes
    base = OUT / "section5-figure4"
    burst, resets = base / "burst", base / "resets"
    hours = ["--max-hours", f"{m / 60:.6f}", "--steps", str(STEPS), "--seed", "4"]
    launch_all([
        (burst, [*hours, "--population-size", "10", "--mutation-burst", f"5@{m / 3:.3f}m-{2 * m / 3:.3f}m"]),
        (resets, [*hours, "--population-size", "5",
                  *[x for k in (1, 2, 3) for x in ("--weight-reset", f"{k * m / 4:.3f}m")]]),
    ])
    out = {}
    cuts = {"burst": [m / 3, 2 * m / 3], "resets": [m / 4, m / 2, 3 * m / 4]}
    for pop, name in ((burst, "burst"), (resets, "resets")):
        s = report([pop], [f"Figure 4, {name}"], base / f"report-{name}")
        e = s["experiments"][0]
        fig = next(v for k, v in s["files"].items() if k.startswith("individuals:"))
        copy_figure(base / f"report-{name}" / fig, f"section5-figure4-{name}.png")
        out[name] = {"individuals": e["individuals"], "best_val": (e["best"] or {}).get("val_accuracy"),
                     "best_test": best_test(s)[0], "wall_minutes": 60 * e["wall_hours"],
                     "phases": phase_stats(pop, cuts[name])}
        print(name, out[name], flush=True)
    save("section5-figure4", {"minutes": m, "steps": STEPS, **out})


if __name__ == "__main__":
    main()
