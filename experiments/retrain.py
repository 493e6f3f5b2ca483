"""What retraining adds to a population's best (issue 28): `lse retrain` at several budgets.

    python experiments/retrain.py --pop POP --minutes 10 20 40 [--from-scratch] [--tag hour]

The population is copied first (into experiments/out/retrain-<tag>/pop; the source is never
written), its best by validation is read with the real report (validation and test accuracy as
evolution left it), then `lse retrain` (lse.runners.retrain.retrain, the command's own code)
trains that architecture again for each budget -- from its weights, and with --from-scratch also
from fresh weights -- one after another, on one thread.  Writes docs/retrain-<tag>.json (every
number) and docs/RETRAIN-<tag>.md (the table, generated from the JSON: nothing typed by hand).

The full measurement of the issue is the hour preset's best at 10, 20 and 40 extra minutes on 2
cores; a --tag containing "scale-down" marks a shortened run as such in its table.

    python experiments/retrain.py --pop POP --minutes 10 20 40 --quiet-speed 2 --tag hour

With --quiet-speed T, "M minutes" is made a number of steps first: a 1-minute retrain on T
threads of the (then quiet) machine measures the architecture's speed, and each budget trains
M * 60 / (seconds per step) steps.  The budgets then run side by side, one thread each, and need
no quiet machine: a number of steps gives the same model however long the wall clock takes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(pop: Path, minutes: list[float], from_scratch: bool, tag: str, threads: int = 1,
            quiet_speed: int | None = None) -> dict:
    import torch

    from lse.reports.models import pick
    from lse.reports.report import make_report
    from lse.runners.retrain import retrain
    from lse.store.population import Store

    torch.set_num_threads(threads)
    work = ROOT / "experiments" / "out" / f"retrain-{tag}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    copy = work / "pop"
    shutil.copytree(pop, copy, symlinks=True)
    shutil.rmtree(copy / "retrained", ignore_errors=True)
    summary = make_report([copy], work / "report-before")["experiments"][0]
    best = summary["best"]
    rec = pick(Store(copy).open(), "best")[0]
    runs = []
    speed = None
    if quiet_speed:
        torch.set_num_threads(quiet_speed)
        t0 = time.time()
        r = retrain(copy, rec.id, minutes=1.0, seed=0, device="cpu")
        speed = {"threads": quiet_speed, "seconds_per_step": r["train_seconds"] / r["steps"], "steps": r["steps"],
                 "train_seconds": r["train_seconds"]}
        runs.append(_row(r, time.time() - t0))
        print(f"speed on {quiet_speed} quiet thread(s): {1000 * speed['seconds_per_step']:.1f} ms/step "
              f"(1 min from weights: test {r['test_accuracy']:.4f})", flush=True)
        jobs = [(m, scratch, max(1, int(m * 60 / speed["seconds_per_step"])))
                for m in minutes for scratch in ([False, True] if from_scratch else [False])]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as ex:
            futures = [ex.submit(_by_steps, str(copy), rec.id, n, scratch) for m, scratch, n in jobs]
            for (m, scratch, n), f in zip(jobs, futures):
                row = f.result()
                row["minutes_asked"] = m
                runs.append(row)
                print(f"{m:g} min = {n} steps from {row['from']}: validation {row['val_accuracy']:.4f}, "
                      f"test {row['test_accuracy']:.4f}", flush=True)
        minutes = []
    for m in minutes:
        for scratch in ([False, True] if from_scratch else [False]):
            t0 = time.time()
            r = retrain(copy, rec.id, minutes=m, from_scratch=scratch, seed=0, device="cpu")
            runs.append(_row(r, time.time() - t0))
            print(f"{m:g} min from {r['from']}: {r['steps']} steps, validation {r['val_accuracy']:.4f}, "
                  f"test {r['test_accuracy']:.4f}", flush=True)
    cfg = Store(copy).open().config
    return {
        "tag": tag, "source": str(pop), "generated_at": time.time(), "threads": 1 if speed else threads,
        "cores": os.cpu_count(), "quiet_speed": speed,
        "dataset": cfg.dataset, "evolution": {"individuals": summary["individuals"], "wall_hours": summary["wall_hours"],
                                              "experiment_flops": summary["experiment_flops"]},
        "best": {"id": best["id"], "val_accuracy": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
                 "params": best.get("params"), "architecture": best.get("architecture")},
        "runs": runs,
    }


def _row(r: dict, wall: float) -> dict:
    r = {**r, "wall_seconds": wall}
    return {k: r.get(k) for k in ("name", "from", "minutes_asked", "steps", "train_seconds", "wall_seconds",
                                  "val_accuracy_before", "val_accuracy", "test_accuracy", "flops", "calibration")}


def _by_steps(pop: str, individual: str, steps: int, scratch: bool) -> dict:
    """One budget, in a process of its own, on one thread."""
    import torch

    from lse.runners.retrain import retrain

    torch.set_num_threads(1)
    t0 = time.time()
    r = retrain(pop, individual, steps=steps, from_scratch=scratch, seed=0, device="cpu", echo=lambda *_: None)
    return _row(r, time.time() - t0)


def table(res: dict) -> str:
    """The markdown page of one measurement, from its JSON alone."""
    b = res["best"]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    scale = " (SCALE-DOWN: a shortened run proving the script, not the issue's measurement)" if "scale-down" in res["tag"] else ""
    lines = [
        f"# Retraining a population's best: {res['tag']}{scale}",
        "",
        f"Generated by `experiments/retrain.py` from `docs/retrain-{res['tag']}.json`; do not edit by hand.",
        "",
        f"Population: `{res['source']}` ({res['dataset']}, {res['evolution']['individuals']} individuals in "
        f"{60 * res['evolution']['wall_hours']:.1f} minutes of evolution). Best by validation: `{b['id']}`, "
        f"{b.get('params') or '?'} parameters, validation {pct(b['val_accuracy'])}, test {pct(b['test_accuracy'])} "
        "as evolution left it.",
        "",
        _how(res),
        "",
        "| extra minutes | from | steps | validation | test | test gain | FLOPs |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        gain = None if b["test_accuracy"] is None else r["test_accuracy"] - b["test_accuracy"]
        lines.append(f"| {r['minutes_asked']:g} | {r['from']} | {r['steps']} | {pct(r['val_accuracy'])} | "
                     f"{pct(r['test_accuracy'])} | {'-' if gain is None else f'{100 * gain:+.2f} pts'} | "
                     f"{r['flops']:.3g} |")
    return "\n".join(lines) + "\n"


def _how(res: dict) -> str:
    q = res.get("quiet_speed")
    if not q:
        return (f"Retraining: `lse retrain --minutes M` (cosine learning rate from the individual's own to 0; the "
                f"number of steps is what fitted in M minutes after measuring the speed), {res['threads']} thread(s) "
                f"on a {res['cores']}-core machine shared with other work.")
    return (f"Retraining: `lse retrain --steps N` with N = M minutes of this architecture's speed on {q['threads']} "
            f"quiet threads of this {res['cores']}-core machine ({1000 * q['seconds_per_step']:.1f} ms per step, "
            f"measured by the 1-minute row, itself `lse retrain --minutes 1`); cosine learning rate from the "
            "individual's own to 0, from its inherited weights unless the row says scratch. The budgets then ran "
            "side by side, one thread each (a number of steps gives the same model whatever the wall clock).")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pop", type=Path, required=True)
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 20, 40])
    p.add_argument("--from-scratch", action="store_true", help="also retrain from fresh weights at each budget")
    p.add_argument("--tag", default="hour")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet-speed", type=int, default=None, metavar="T",
                   help="turn minutes into steps at the speed measured on T quiet threads, then run the budgets "
                        "side by side (see the module docstring)")
    a = p.parse_args()
    res = measure(a.pop, a.minutes, a.from_scratch, a.tag, a.threads, a.quiet_speed)
    docs = ROOT / "docs"
    (docs / f"retrain-{a.tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    (docs / f"RETRAIN-{a.tag}.md").write_text(table(res))
    print(f"wrote docs/retrain-{a.tag}.json and docs/RETRAIN-{a.tag}.md")


if __name__ == "__main__":
    main()
