"""Section 5's three recombinations against the paper's mutation-only algorithm, at equal
compute (the same --max-flops for every experiment), with repeats and ±2σ bands.

    python experiments/section5_recombination.py [--flops 1e10] [--repeats 2] [--minutes 6]

    mutation only        --algorithm real2017 (the paper's)
    probabilities        --algorithm recombination -o recombination=probabilities
    weights              --algorithm recombination -o recombination=weights
    fusion               --algorithm recombination -o recombination=fusion

Scale-downs (paper -> here): CIFAR-10 -> Fashion-MNIST (validation 2,000); population 1,000
-> 8; 25,600 steps -> 50; the paper's recombination experiments (sizes unstated) -> --repeats
repeats of --flops FLOPs each (F_t N_t + F_v N_v, section 3.5), one worker each, two at a
time; --minutes is a safety cap (a run that hits it first is reported as such).

Writes experiments/out/section5-recombination/ (populations, report), docs/section5-recombination.json
(the numbers), docs/figures/section5-recombination.png (lse
report's progress figure: mean ± 2σ of the repeats against FLOPs and wall time) and
docs/figures/section5-distributions.png (how the evolved distributions moved).
"""

from __future__ import annotations

import argparse

from _common import OUT, best_test, copy_figure, launch_all, report, save

VARIANTS = {
    "mutation only": ["--algorithm", "real2017"],
    "probabilities": ["--algorithm", "recombination", "-o", "recombination=probabilities"],
    "weights": ["--algorithm", "recombination", "-o", "recombination=weights"],
    "fusion": ["--algorithm", "recombination", "-o", "recombination=fusion"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flops", type=float, default=1e10, help="compute of every experiment (FLOPs)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=6.0, help="safety cap per experiment")
    a = ap.parse_args()
    base = OUT / "section5-recombination"
    runs, labels = [], []
    for r in range(a.repeats):
        for label, args in VARIANTS.items():
            pop = base / f"{label.replace(' ', '-')}-r{r}"
            runs.append((pop, [*args, "--max-flops", f"{a.flops:g}", "--max-hours", f"{a.minutes / 60:.6f}",
                               "--population-size", "8", "--steps", "50", "--seed", str(r)]))
            labels.append(label)
    launch_all(runs)
    s = report([p for p, _ in runs], labels, base / "report")
    copy_figure(base / "report" / s["files"]["progress"], "section5-recombination.png")
    dist = next((v for k, v in s["files"].items() if k.startswith("distributions:probabilities:")), None)
    if dist:  # how the evolved distributions moved, in the first repeat of "probabilities"
        copy_figure(base / "report" / dist, "section5-distributions.png")
    rows = [{"variant": lab, "pop": str(p), "best_test": t, "best_val": (e["best"] or {}).get("val_accuracy"),
             "individuals": e["individuals"], "flops": e["experiment_flops"], "wall_minutes": 60 * e["wall_hours"]}
            for lab, (p, _), t, e in zip(labels, runs, best_test(s), s["experiments"])]
    for row in rows:
        print(row, flush=True)
    save("section5-recombination", {"flops": a.flops, "repeats": a.repeats, "rows": rows})


if __name__ == "__main__":
    main()
