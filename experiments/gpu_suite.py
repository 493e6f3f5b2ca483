"""Every GPU measurement and GPU-only test of issue 27, in one run of at most ~8 minutes.

    python experiments/gpu_suite.py --out DIR [--budget 450]

On a bare GPU machine (docs/GPU.md says how to carry the wheels and Fashion-MNIST there):

1. the GPU-only tests (tests/test_gpu.py: graphed = eager parameters, fallback, MPS clients);
2. the trainer against a minimal host-fed fp32 loop, eager and graphed, fp32 and bf16, with and
   without augmentation and the cosine schedule, for the three canonical individuals, and the
   fixed cost of a child outside its training steps;
3. bf16 against fp32: validation accuracy after 2,000 graphed steps (cosine), 2 seeds;
4. children per GPU-hour with K = 1 ... 32 trainer processes on the GPU, plain and under MPS, at
   500 steps (the three canonical individuals in turn) and for the 3-convolution individual at
   2,000 steps (its training steps/s give the 25,600-step figure by extrapolation);
5. seed 003 in memory: elitism generations per second, the population judged one net per pass
   and all at once (issue 32);
6. a real evolution with ``--preset gpu`` and the fastest K (and MPS if it won) for the rest of
   the budget: births, per-child time outside training, best validation and its test accuracy.

Each part writes into DIR/gpu.json as it finishes (a failure is recorded and the rest goes on),
and DIR/GPU-tables.md holds the tables that docs/GPU.md quotes (``--tables-only DIR`` remakes
it from gpu.json).  The same script runs on a CPU (``--device cpu``) as a dry run at toy sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class Suite:
    def __init__(self, out: Path, budget: float, device: str, small: bool):
        self.out, self.budget, self.device, self.small = out, budget, device, small
        self.t0 = time.monotonic()
        self.results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def save(self) -> None:
        (self.out / "gpu.json").write_text(json.dumps(self.results, indent=1, default=str))
        (self.out / "GPU-tables.md").write_text(tables(self.results))

    def part(self, name: str, fn) -> None:
        if self.only and name not in self.only:
            return
        t = time.monotonic()
        print(f"\n=== {name} ({self.left():.0f} s of the budget left)", flush=True)
        try:
            self.results[name] = fn()
        except Exception as e:  # one part failing must not lose the others
            traceback.print_exc()
            self.results[name] = {"error": f"{type(e).__name__}: {e}"}
        self.results.setdefault("seconds", {})[name] = round(time.monotonic() - t, 1)
        self.save()


def environment(device: str) -> dict:
    import torch

    env = {"torch": torch.__version__, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        try:
            env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                                "--format=csv,noheader"], capture_output=True, text=True,
                                               timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            env["nvidia_smi"] = str(e)
    print(env, flush=True)
    return env


def gpu_tests(out: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
                       cwd=REPO, capture_output=True, text=True, timeout=240)
    (out / "tests.log").write_text(r.stdout + r.stderr)
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(last, flush=True)
    return {"returncode": r.returncode, "summary": last}


def bench(s: Suite) -> dict:
    from lse.runners.bench import _overhead, bench_data, canonical_individuals, run_variants

    ds, host = bench_data(s.device, "fashion-mnist" if not s.small else None, None, 1,
                          synthetic_size=2000, validation_size=5000 if not s.small else 200)
    steps, gsteps = (500, 2000) if not s.small else (10, 20)
    rows = run_variants(ds, host, steps, repeats=2, graph_steps=gsteps, echo=print)
    overhead = {}
    for ind in canonical_individuals(ds.input_shape, ds.num_classes):
        for graph in (False, True):
            o, eval_ms = _overhead(ind, ds, cuda_graph=graph)
            overhead[f"{ind.name} {'graph' if graph else 'eager'}"] = {**{k: round(v, 2) for k, v in o.items()},
                                                                      "eval_ms": round(eval_ms, 2)}
    return {"steps": steps, "graph_steps": gsteps, "rows": rows, "overhead_ms": overhead}


def precision_accuracy(s: Suite) -> dict:
    import torch

    from lse.nn.build import build_model
    from lse.nn.train import train
    from lse.runners.bench import bench_data, canonical_dnas

    ds, _ = bench_data(s.device, "fashion-mnist" if not s.small else None, None, 1, synthetic_size=2000,
                       validation_size=5000 if not s.small else 200)
    steps = 2000 if not s.small else 20
    out = []
    for name, dna in canonical_dnas(ds.input_shape[0]).items():
        if name == "initial":
            continue
        for seed in (0, 1):
            for precision in ("fp32", "bf16"):
                torch.manual_seed(seed)
                m = build_model(dna, ds.input_shape, ds.num_classes)
                r = train(m, ds, learning_rate=0.05, steps=steps, seed=seed, device=s.device, lr_schedule="cosine",
                          precision=precision)
                out.append({"individual": name, "seed": seed, "precision": precision, "val_accuracy": r.val_accuracy,
                            "train_seconds": round(r.train_seconds, 3), "failed": r.failed_reason})
                print(out[-1], flush=True)
    return {"steps": steps, "runs": out}


def weight_ga(s: Suite) -> dict:
    """Seed 003 in memory (issue 32): generations per second of the elitism scheme (population
    100, Accordion, fitness on batches of 32) with the population judged one net per pass (what
    a CPU does best) and all at once (what a GPU should), on the MNIST net and the LeNet."""
    import torch

    from lse.config import ExperimentConfig
    from lse.nn.data import load_dataset
    from lse.runners.ga_memory import MemoryGA

    data_dir = str(s.small_data) if s.small else None
    ds = load_dataset("fashion-mnist", data_dir, validation_size=256, seed=0)
    gens = 200 if not s.small else 2
    rows = []
    for net, pad in (("mnist-table2", 0), ("lenet-table3", 2)):
        for group in (1, 0):
            cfg = ExperimentConfig(dataset="fashion-mnist", data_dir=data_dir, validation_size=256, seed=0,
                                   population_size=100 if not s.small else 12,
                                   algorithm={"name": "ga-elitism", "options": {"net": net, "fitness_batch": 32}})
            ga = MemoryGA(cfg, ds, device=s.device, pad=pad, group=group, monitor=100 if s.small else 2000)
            ga.run(1, checkpoints=1)  # warm up (allocations, kernels)
            if s.device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            r = ga.run(gens, checkpoints=1)
            if s.device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            rows.append({"net": net, "group": group or "all", "generations": gens, "children": r.children,
                         "seconds": round(dt, 2), "generations_per_s": round(gens / dt, 2),
                         "children_per_s": round(r.children / dt, 1),
                         "parts_s": {k: round(v, 2) for k, v in r.seconds.items()}})
            print(rows[-1], flush=True)
    return {"rows": rows}


def pack(s: Suite, mps: bool) -> dict:
    from lse.runners.pack import run_pack

    ks = [1, 2, 4, 8, 16, 32] if not s.small else [1, 2]
    seconds = 4.0 if not s.small else 0.5
    kw = dict(device=s.device, mps=mps, seconds=seconds, data_dir=None if not s.small else str(s.small_data),
              validation_size=5000 if not s.small else 200)
    rows = run_pack(ks, steps=500 if not s.small else 5, **kw, windows=[
        ("mix", 500 if not s.small else 5, None, ks),
        ("3-conv", 2000 if not s.small else 10, ("3-conv",), [k for k in ks if k in (1, 4, 16, 32)] or ks)])
    return {"seconds_per_window": seconds, "rows": [r.to_dict() for r in rows]}


def evolution(s: Suite) -> dict:
    """``--preset gpu`` with the K (and MPS) that trained the most children per hour."""
    best = None
    for key in ("pack", "pack_mps"):
        for r in s.results.get(key, {}).get("rows", []) or []:
            if r.get("workload") == "mix" and (best is None or r["children_per_hour"] > best["children_per_hour"]):
                best = r
    k = best["k"] if best else 8
    use_mps = bool(best and best["mps"])
    minutes = max(1.0, min(10.0, (s.left() - 40) / 60))
    pop = Path("/tmp/lse-gpu-evolution")
    subprocess.run(["rm", "-rf", str(pop)])
    argv = [sys.executable, "-m", "lse.launch", "--preset", "gpu", "--device", s.device, "--workers", str(k),
            "--workers-per-gpu", str(k), "--pop", str(pop), "--max-hours", f"{minutes / 60:.4f}", "--no-progress"]
    if use_mps:
        argv.append("--mps")
    if s.small:
        argv += ["--data-dir", str(s.small_data), "--validation-size", "200", "--steps", "5"]
    print(" ".join(argv), flush=True)
    t = time.monotonic()
    util: list[list[float]] = []
    stop = threading.Event()

    def sample() -> None:  # the GPU's own view of the run: utilisation and memory, every 2 s
        while not stop.wait(2.0):
            try:
                q = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                    "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
                util.append([float(v) for v in q.stdout.split(",")[:2]])
            except (OSError, ValueError, subprocess.SubprocessError):
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    if s.device == "cuda":
        sampler.start()
    try:
        r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=minutes * 60 + 120)
    finally:
        stop.set()
    wall = time.monotonic() - t
    print(r.stdout[-1500:], r.stderr[-1500:], flush=True)
    busy = [u[0] for u in util]
    return {"k": k, "mps": use_mps, "minutes": round(minutes, 2), "wall_seconds": round(wall, 1),
            "returncode": r.returncode, "gpu_utilisation_median": statistics.median(busy) if busy else None,
            "gpu_memory_mib_max": max((u[1] for u in util), default=None), **summarise_run(pop, s)}


def summarise_run(pop: Path, s: Suite) -> dict:
    from lse.nn.data import load_dataset
    from lse.reports.report import Evaluator
    from lse.store import Store

    store = Store(pop).open()
    cfg = store.config
    created = os.stat(store.paths.experiment).st_mtime
    recs = sorted((r for r in store.records() if r.born_at), key=lambda r: r.born_at)
    ok = [r for r in recs if r.val_accuracy is not None]
    by_worker: dict[str, list] = {}
    for r in recs:
        by_worker.setdefault(r.worker, []).append(r)
    cycles, outside = [], []
    for rs in by_worker.values():
        for a, b in zip(rs, rs[1:]):
            cycles.append(b.born_at - a.born_at)
            outside.append(b.born_at - a.born_at - (b.train_seconds or 0) - (b.eval_seconds or 0))
    timings: dict[str, list] = {}
    for r in recs:
        for k, v in (r.extra.get("timings") or {}).items():
            timings.setdefault(k, []).append(v)
    med = lambda xs: round(statistics.median(xs), 4) if xs else None  # noqa: E731
    ds = load_dataset(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.seed, s.device)
    ev = Evaluator(ds, batch_size=1000, device=s.device)
    checkpoints = []
    minutes = (recs[-1].born_at - created) / 60 if recs else 0
    for m in [1, 2, 3, 4, 5, 6, 8, 10]:
        if m > minutes + 0.5:
            continue
        upto = [r for r in ok if (r.born_at - created) / 60 <= m]
        if not upto:
            continue
        b = max(upto, key=lambda r: (r.val_accuracy, r.born_at))
        checkpoints.append({"minute": m, "best_id": b.id, "val": b.val_accuracy, "test": ev.test_accuracy(pop, b),
                            "params": b.params, "steps": b.steps, "individuals": len(upto)})
    final = max(ok, key=lambda r: (r.val_accuracy, r.born_at)) if ok else None
    span_h = (recs[-1].born_at - created) / 3600 if recs else 0
    return {
        "individuals": len(recs), "failed": len(recs) - len(ok), "graphed": sum(bool(r.extra.get("graphed")) for r in recs),
        "per_gpu_hour": round(len(recs) / span_h) if span_h else None,
        "median_train_seconds": med([r.train_seconds for r in recs if r.train_seconds is not None]),
        "median_eval_seconds": med([r.eval_seconds for r in recs if r.eval_seconds is not None]),
        "median_cycle_seconds": med(cycles), "median_outside_training_seconds": med(outside),
        "median_timings_ms": {k: med(v) for k, v in timings.items()},
        "steps_trained": sorted({r.steps for r in recs}),
        "checkpoints": checkpoints,
        "final": None if final is None else {"id": final.id, "val": final.val_accuracy,
                                             "test": ev.test_accuracy(pop, final), "params": final.params,
                                             "steps": final.steps},
    }


# ---------------------------------------------------------------------------------------------
# tables


def tables(res: dict) -> str:
    out = [f"Run of {res.get('started')}; {json.dumps(res.get('environment', {}))}", ""]
    b = res.get("bench") or {}
    if b.get("rows"):
        from lse.runners.bench import format_variants

        out += [f"### Steps per second (eager {b['steps']} steps, graphed {b['graph_steps']}; best of 2)", "",
                format_variants(b["rows"]), ""]
        out += ["### Per child outside the training steps (ms)", "",
                "| individual, loop | load | build | inherit | first step | eval (5,000 images) |", "|---|---|---|---|---|---|"]
        for k, o in b["overhead_ms"].items():
            out.append(f"| {k} | {o['load']} | {o['build']} | {o['inherit']} | {o['first_step']} | {o['eval_ms']} |")
        out.append("")
    p = res.get("precision") or {}
    if p.get("runs"):
        out += [f"### bf16 against fp32: validation accuracy after {p['steps']} graphed steps (cosine)", "",
                "| individual | seed | fp32 | bf16 | fp32 s | bf16 s |", "|---|---|---|---|---|---|"]
        runs = p["runs"]
        for r in runs:
            if r["precision"] != "fp32":
                continue
            q = next(x for x in runs if x["individual"] == r["individual"] and x["seed"] == r["seed"] and x["precision"] == "bf16")
            out.append(f"| {r['individual']} | {r['seed']} | {100 * r['val_accuracy']:.2f}% | {100 * q['val_accuracy']:.2f}% "
                       f"| {r['train_seconds']} | {q['train_seconds']} |")
        out.append("")
    rows = [r for key in ("pack", "pack_mps") for r in (res.get(key) or {}).get("rows", []) or []]
    if rows:
        out += ["### Children per GPU-hour with K processes", "",
                "| workload | steps | K | MPS | children | per GPU-hour | steps/s (all K) | 25,600-step children per GPU-hour (extrapolated) |",
                "|---|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["workload"], r["mps"], r["k"])):
            extra = f"{r['steps_per_second'] * 3600 / 25600:,.0f}" if r["workload"] == "3-conv" else ""
            out.append(f"| {r['workload']} | {r['steps']:,} | {r['k']} | {'yes' if r['mps'] else 'no'} | {r['children']:,} | "
                       f"{r['children_per_hour']:,.0f} | {r['steps_per_second']:,.0f} | {extra} |")
        out.append("")
    w = res.get("weight_ga") or {}
    if w.get("rows"):
        out += ["### Seed 003 in memory: elitism, population 100, batches of 32 (experiments/seed003_weights_ga.py)", "",
                "| net | individuals per pass | generations | children/s | generations/s | select / assemble / evaluate s |",
                "|---|---|---|---|---|---|"]
        for r in w["rows"]:
            ps = r["parts_s"]
            out.append(f"| {r['net']} | {r['group']} | {r['generations']} | {r['children_per_s']:,} | {r['generations_per_s']} "
                       f"| {ps.get('select')} / {ps.get('assemble')} / {ps.get('evaluate')} |")
        out.append("")
    e = res.get("evolution") or {}
    if e.get("checkpoints"):
        out += [f"### Evolution: --preset gpu, K={e['k']}, MPS {'on' if e['mps'] else 'off'}, {e['minutes']} minutes", "",
                f"{e['individuals']} individuals ({e['failed']} failed, {e['graphed']} graphed), "
                f"{e['per_gpu_hour']} per GPU-hour; median child: {e['median_train_seconds']} s training, "
                f"{e['median_eval_seconds']} s evaluation, {e['median_cycle_seconds']} s from birth to birth of one worker, "
                f"{e['median_outside_training_seconds']} s of it outside training and evaluation; "
                f"GPU utilisation (nvidia-smi, median of 2-s samples) {e.get('gpu_utilisation_median')}%, "
                f"memory at most {e.get('gpu_memory_mib_max')} MiB; "
                f"trainer parts (median ms): {e['median_timings_ms']}", "",
                "| minute | individuals | best validation | its test | params | steps |", "|---|---|---|---|---|---|"]
        for c in e["checkpoints"]:
            t = "-" if c["test"] is None else f"{100 * c['test']:.2f}%"
            out.append(f"| {c['minute']} | {c['individuals']} | {100 * c['val']:.2f}% | {t} | {c['params']:,} | {c['steps']} |")
        out.append("")
    out.append(f"seconds per part: {res.get('seconds')}")
    for k, v in res.items():
        if isinstance(v, dict) and "error" in v:
            out.append(f"**{k} failed**: {v['error']}")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- tables: experiments/gpu_suite.py --tables-only -->", "<!-- end of tables -->"


def with_tables(doc: str, text: str) -> str:
    """``doc`` with the part between the BEGIN and END markers replaced by ``text``."""
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{text}{END}{tail}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole suite (default 450)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tables-only", action="store_true", help="remake GPU-tables.md from OUT/gpu.json")
    ap.add_argument("--only", default=None, help="comma-separated parts to run (default: all)")
    ap.add_argument("--doc", type=Path, default=None,
                    help="with --tables-only: also replace the tables between the markers in this doc (docs/GPU.md)")
    args = ap.parse_args()
    if args.tables_only:
        res = json.loads((args.out / "gpu.json").read_text())
        (args.out / "GPU-tables.md").write_text(tables(res))
        if args.doc is not None:
            args.doc.write_text(with_tables(args.doc.read_text(), tables(res)))
        print(tables(res))
        return 0
    s = Suite(args.out, args.budget, args.device, small=args.device != "cuda")
    s.only = set(args.only.split(",")) if args.only else None
    if s.small:  # the CPU dry run: toy sizes on a synthetic set
        from lse.nn.synthetic import write_synthetic

        s.small_data = write_synthetic(Path("/tmp/lse-gpu-suite-data"), "idx", n_train=600, n_test=200,
                                       image_shape=(28, 28), seed=0)
        os.environ["LSE_DATA"] = str(s.small_data)
    s.part("environment", lambda: environment(args.device))
    s.part("tests", lambda: gpu_tests(args.out))
    s.part("bench", lambda: bench(s))
    s.part("precision", lambda: precision_accuracy(s))
    s.part("weight_ga", lambda: weight_ga(s))
    s.part("pack", lambda: pack(s, mps=False))
    if args.device == "cuda":
        s.part("pack_mps", lambda: pack(s, mps=True))
    s.part("evolution", lambda: evolution(s))
    print("\n" + tables(s.results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
