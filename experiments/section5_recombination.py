"""Section 5's three recombinations against the paper's mutation-only algorithm, at ENFORCED
equal compute, paired and repeated (issue 31).

    python experiments/section5_recombination.py --flops 2e12 --repeats 5   # the runs, the JSON, the table
    python experiments/section5_recombination.py --table                    # the table from the committed JSON

    mutation only        --algorithm real2017 (the paper's)
    probabilities        --algorithm recombination -o recombination=probabilities
    weights              --algorithm recombination -o recombination=weights
    fusion               --algorithm recombination -o recombination=fusion (function-preserving)

Pairing: repeat r of every arm runs with --seed r, so the arms of one repeat start from the same
initial population and see the same data order until they diverge.  Configuration: the hour
preset (growth-weighted mutations, network morphisms, cosine learning rate -- what users run, and
a search that does not stall), one worker and one thread per run, two runs at a time on the
2-core machine.  Equal compute: each run stops at --flops (the launcher's max-flops, F_t N_t +
F_v N_v of section 3.5) and is READ up to exactly --flops (`lse report --until-flops`), so a
last child that overshot the budget counts for nothing.  --minutes is a safety cap.

Writes docs/section5-recombination.json (one row per run: arm, repeat, best by validation within
the budget and its test accuracy, individuals, FLOPs read, two-parent children and those that
really recombined) and prints the table for docs/SECTION5.md (:func:`table`, a pure function
of that JSON, so a test can regenerate it once the runs are committed: issue 31).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, OUT, copy_figure, launch_all, report, save  # noqa: E402

NAME = "section5-recombination"
VARIANTS = {
    "mutation only": ["--algorithm", "real2017"],
    "probabilities": ["--algorithm", "recombination", "-o", "recombination=probabilities"],
    "weights": ["--algorithm", "recombination", "-o", "recombination=weights"],
    "fusion": ["--algorithm", "recombination", "-o", "recombination=fusion"],
}


def children_counts(exp) -> dict:
    """Children with two parents, and those that really took something of the second, among
    the individuals an experiment read up to the budget (lse.reports.report.Experiment)."""
    by_id = exp.by_id  # a property that builds the dict: once
    recs = [by_id[i.id] for i in exp.inds]
    return {"children": sum(1 for r in recs if r.parent_id), "two_parents": sum(1 for r in recs if len(r.parents) >= 2),
            "recombined": sum(1 for r in recs if r.extra.get("recombined"))}


def _mean_2sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{100 * xs[0]:.1f} (n=1)"
    return f"{100 * statistics.fmean(xs):.1f} ± {200 * statistics.stdev(xs):.1f}"


def table(data: dict) -> str:
    """The page's table: per arm, mean ± 2 sample sd over the repeats of the test accuracy of the
    best-by-validation individual within the budget, and the paired difference to mutation only."""
    rows = data["rows"]
    arms = list(dict.fromkeys(r["variant"] for r in rows))
    base = {r["repeat"]: r for r in rows if r["variant"] == "mutation only"}
    lines = [f"Budget {data['flops']:.3g} FLOPs per run (read up to exactly that), {data['repeats']} repeats, "
             f"preset {data['preset']}; mean ± 2 sd over repeats.", "",
             "| arm | repeats | test acc. of best (%) | best val. (%) | individuals | two-parent children "
             "| really recombined | paired difference to mutation only (points) |",
             "|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        rs = [r for r in rows if r["variant"] == arm and r["best_test"] is not None]
        diffs = [r["best_test"] - base[r["repeat"]]["best_test"] for r in rs
                 if arm != "mutation only" and r["repeat"] in base and base[r["repeat"]]["best_test"] is not None]
        lines.append(f"| {arm} | {len(rs)} | {_mean_2sd([r['best_test'] for r in rs])} "
                     f"| {_mean_2sd([r['best_val'] for r in rs if r['best_val'] is not None])} "
                     f"| {statistics.fmean(r['individuals'] for r in rs):.1f} "
                     f"| {sum(r['two_parents'] for r in rs)} | {sum(r['recombined'] for r in rs)} "
                     f"| {_mean_2sd(diffs) if diffs else '-'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flops", type=float, default=2e12, help="compute of every run (FLOPs), enforced when read")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--preset", default="hour")
    ap.add_argument("--minutes", type=float, default=15.0, help="safety cap per run")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine (then give a larger --flops)")
    ap.add_argument("--table", action="store_true", help="only print the table of the committed JSON")
    a = ap.parse_args()
    if a.table:
        print(table(json.loads((DATA / f"{NAME}.json").read_text())))
        return
    base = OUT / NAME
    runs, labels, repeats = [], [], []
    for r in range(a.repeats):
        for label, args in VARIANTS.items():
            pop = base / f"{label.replace(' ', '-')}-r{r}"
            runs.append((pop, [*args, "--preset", a.preset, "--max-flops", f"{a.flops:g}",
                               "--max-hours", f"{a.minutes / 60:.6f}", "--seed", str(r),
                               *(["--device", a.device] if a.device != "cpu" else [])]))
            labels.append(label)
            repeats.append(r)
    launch_all(runs)
    s = report([p for p, _ in runs], labels, base / "report", until_flops=a.flops)
    copy_figure(base / "report" / s["files"]["progress"], "section5-recombination.png")
    from lse.reports.report import load_experiment

    rows = []
    for lab, r, (p, _), e in zip(labels, repeats, runs, s["experiments"]):
        exp = load_experiment(p, lab, a.flops)
        rows.append({"variant": lab, "repeat": r, "pop": str(p.relative_to(OUT.parent.parent)),
                     "best_test": (e["best"] or {}).get("test_accuracy"), "best_val": (e["best"] or {}).get("val_accuracy"),
                     "individuals": e["individuals"], "individuals_cut": e["individuals_cut"],
                     "flops_read": e["experiment_flops"], "wall_minutes": 60 * e["wall_hours"],
                     "architecture": (e["best"] or {}).get("architecture"), **children_counts(exp)})
    data = {"flops": a.flops, "repeats": a.repeats, "preset": a.preset, "device": a.device, "rows": rows}
    save(NAME, data)
    print(table(data))


if __name__ == "__main__":
    main()
