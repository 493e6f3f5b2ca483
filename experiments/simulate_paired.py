"""Store throughput before and after a change, paired: `lse simulate` in two checkouts.

    git worktree add /tmp/before <commit>
    python experiments/simulate_paired.py run --before /tmp/before --after . --workers 10 100 250 \
        --repeats 3 --runs /tmp/simpair --out docs/simulate-redesign.json
    python experiments/simulate_paired.py table --out docs/simulate-redesign.json

Each (workers, repeat) runs both checkouts one after the other on the same machine with the same
settings and seed (the repeat number), the order alternating by repeat so neither always goes
first: `lse simulate --pop NEW --workers N --population-size 1000 --individuals 0 --seconds 40
--seed R --listing-sizes ''`.  The per-run JSON that `lse simulate --json` writes is kept in
--runs; --out collects from it what the table shows.  ``table`` prints the markdown table that
docs/SCALING.md carries (tests/test_simulate_doc.py checks that the page has it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SIDES = ("before", "after")


def run_one(tree: Path, workers: int, seed: int, seconds: float, out: Path) -> None:
    pop = Path(tempfile.mkdtemp(prefix="simpair-")) / "pop"
    cmd = [sys.executable, "-c", "import sys; from lse.cli import app; sys.argv[0] = 'lse'; app()", "simulate",
           "--pop", str(pop), "--workers", str(workers), "--population-size", "1000", "--individuals", "0",
           "--seconds", str(seconds), "--seed", str(seed), "--listing-sizes", "", "--json", str(out)]
    try:
        subprocess.run(cmd, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(pop.parent, ignore_errors=True)


def collect(runs: Path, workers: list[int], repeats: int, meta: dict) -> dict:
    rows = []
    for n in workers:
        for rep in range(1, repeats + 1):
            row = {"workers": n, "repeat": rep}
            for side in SIDES:
                d = json.loads((runs / f"{side}-{n}-{rep}.json").read_text())
                row[side] = {"births_per_second": d["births_per_second"], "births": d["births"],
                             "store_share": d["store_share"],
                             "store_cpu_ms_per_birth": sum(d["op_cpu_ms_per_birth"].values())}
            rows.append(row)
    return {"meta": meta, "rows": rows}


def table(data: dict) -> str:
    """One row per worker count: births/s of each side over the repeats (mean ± 2 sample sd), the
    paired ratio after/before, and the store's CPU per birth."""
    lines = ["| workers | repeats | births/s before | births/s after | after / before, paired (mean ± 2σ) "
             "| store CPU ms per birth, before → after |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n in sorted({r["workers"] for r in data["rows"]}):
        rows = [r for r in data["rows"] if r["workers"] == n]

        def pm(xs: list[float], digits: int = 1) -> str:
            return f"{statistics.mean(xs):.{digits}f} ± {2 * statistics.stdev(xs):.{digits}f}" if len(xs) > 1 \
                else f"{xs[0]:.{digits}f}"

        b = [r["before"]["births_per_second"] for r in rows]
        a = [r["after"]["births_per_second"] for r in rows]
        ratio = [x / y for x, y in zip(a, b)]
        cb = statistics.mean(r["before"]["store_cpu_ms_per_birth"] for r in rows)
        ca = statistics.mean(r["after"]["store_cpu_ms_per_birth"] for r in rows)
        lines.append(f"| {n} | {len(rows)} | {pm(b)} | {pm(a)} | {pm(ratio, 2)} | {cb:.1f} → {ca:.1f} |")
    m = data["meta"]
    lines.append("")
    lines.append(f"*before: {m['before']}; after: {m['after']}; {m['machine']}; generated from "
                 f"docs/{m['file']} by `python experiments/simulate_paired.py table`.*")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "collect", "table"])
    p.add_argument("--before", type=Path)
    p.add_argument("--after", type=Path)
    p.add_argument("--workers", type=int, nargs="+", default=[10, 100, 250])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--runs", type=Path, default=Path("experiments/out/simpair"), help="per-run JSON files")
    p.add_argument("--out", type=Path, default=Path("docs/simulate-redesign.json"))
    p.add_argument("--label-before", default=None, help="what 'before' is (default: its git commit)")
    p.add_argument("--label-after", default=None)
    p.add_argument("--machine", default="2 cores, quiet (nothing else running)")
    args = p.parse_args()
    if args.what == "table":
        print(table(json.loads(args.out.read_text())))
        return
    if args.what == "run":
        args.runs.mkdir(parents=True, exist_ok=True)
        for rep in range(1, args.repeats + 1):
            for n in args.workers:
                for side in (SIDES if rep % 2 else SIDES[::-1]):
                    run_one(getattr(args, side), n, rep, args.seconds, args.runs / f"{side}-{n}-{rep}.json")
                    print(f"{side} {n} workers, repeat {rep}: done", flush=True)

    def label(tree: Path | None, given: str | None) -> str:
        if given:
            return given
        return subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True).stdout.strip()[:80]

    meta = {"before": label(args.before, args.label_before), "after": label(args.after, args.label_after),
            "machine": args.machine, "seconds": args.seconds, "file": args.out.name,
            "command": "lse simulate --pop NEW --workers N --population-size 1000 --individuals 0 "
                       f"--seconds {args.seconds:g} --seed REPEAT --listing-sizes ''"}
    data = collect(args.runs, args.workers, args.repeats, meta)
    args.out.write_text(json.dumps(data, indent=1))
    print(table(data))


if __name__ == "__main__":
    main()
