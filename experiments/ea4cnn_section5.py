"""Seed 001 (EA4CNN), section 5 at small scale on real Fashion-MNIST.

    python experiments/ea4cnn_section5.py 51 --out docs/ea4cnn   # EA vs random search, speciation on/off
    python experiments/ea4cnn_section5.py 52 --out docs/ea4cnn   # seeded from a trained network: Table 2

Every run is a real population (lse.store + the worker loop, one worker in this process) with
the ``ea4cnn`` algorithm; random search (RS-CNN) trains |P| random networks from the same
sampler for G epochs each, the paper's "same number of training exercises".  Writes JSON with
every measured figure, PNG plots and a markdown summary into --out; the scale-downs are
options below and are printed into the summary.  The test split is read only here, for the
final networks of the report (never by selection or training).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path


def _env() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def run_population(pop: Path, *, population: int, generations: int, options: dict, seed: int, args) -> list:
    """One EA4CNN run; returns the records of every individual."""
    from lse.config import ExperimentConfig, WorkerOptions
    from lse.runners.worker import run_worker
    from lse.store import Store

    cfg = ExperimentConfig(dataset="fashion-mnist", validation_size=args.validation_size, population_size=population,
                           seed=seed, eval_batch_size=1000, max_individuals=population * (generations + 1),
                           algorithm={"name": "ea4cnn", "options": {"data_fraction": args.data_fraction,
                                                                     "a_min": args.a_min, **options}})
    Store(pop).create(cfg)
    run_worker(pop, WorkerOptions(threads=1, device="cpu"), worker_id="w0", handle_signals=False, log_to_file=True)
    return Store(pop).open().records()


def populations(pop: Path) -> list[list]:
    """[P_1, P_2, ...]: the population after each closed generation, read from the plans."""
    from lse.store import Store
    from lse.store.generations import Generations

    store = Store(pop).open()
    recs = {r.id: r for r in store.records()}
    gens = Generations(store, slots=1)
    out = []
    g = 1
    while True:
        plan = gens.plan(g)
        if plan is None:
            break
        out.append([recs[i] for i in plan.parents if i in recs])
        g += 1
    last = gens.plan(g - 1)
    if last is not None:  # the population after the last closed generation
        alive_after = [recs[i] for i in last.parents if i not in set(last.kill) and i in recs]
        alive_after += [recs[c.id] for c in last.children if ".alive." in c.name and c.id in recs]
        out.append(alive_after)
    return out


def random_search(seed: int, *, population: int, generations: int, args, ds) -> list[list[float]]:
    """RS-CNN: |P| random networks (the EA's initial sampler) trained for G epochs; the
    validation accuracy of each after each epoch."""
    import torch

    from lse.algorithms.ea4cnn import EA4CNNOptions
    from lse.core.layerlist import random_genome
    from lse.nn.layerlist import build_layerlist
    from lse.nn.train import train

    o = EA4CNNOptions()
    rng = random.Random(f"rs:{seed}")
    curves = []
    for i in range(population):
        g = random_genome(rng, input_side=28, max_filters=12, max_pool=4, fc_width=50, learning_rate=0.1)
        torch.manual_seed(seed * 1000 + i)
        model = build_layerlist(g, ds.input_shape, ds.num_classes)
        steps = math.ceil(ds.train_x.shape[0] * args.data_fraction / o.batch_size)
        accs = []
        for epoch in range(generations + 1):  # generation 0 is the initial training, as in the EA
            res = train(model, ds, learning_rate=g.learning_rate, steps=steps, batch_size=o.batch_size, momentum=0.0,
                        weight_decay=0.0, seed=seed * 1000 + i * 100 + epoch, augment=False, data_fraction=args.data_fraction)
            accs.append(res.val_accuracy if res.failed_reason is None else 0.0)
        curves.append({"genome": g.model_dump(mode="json"), "params": sum(p.numel() for p in model.parameters()),
                       "val_accuracy": accs})
    return curves


def section51(args) -> None:
    from lse.nn.data import load_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("fashion-mnist", validation_size=args.validation_size, seed=0)
    P, G = args.population, args.generations
    results = {"EA": [], "EA-no-speciation": [], "RS": []}
    t0 = time.time()
    for r in range(args.repeats):
        for label, opts in (("EA", {}), ("EA-no-speciation", {"speciation": False})):
            pop = Path(args.work) / f"s51-{label}-{r}"
            run_population(pop, population=P, generations=G, options=opts, seed=r, args=args)
            per_gen = populations(pop)
            curve = [max(x.val_accuracy or 0 for x in Pg) for Pg in per_gen]
            final = max(per_gen[-1], key=lambda x: x.val_accuracy or 0)
            results[label].append({"best_val_accuracy_per_generation": curve, "final_best": final.val_accuracy,
                                   "final_best_params": final.params,
                                   "final_mean_params": statistics.mean(x.params for x in per_gen[-1]),
                                   "final_mean_depth": statistics.mean(len(x.dna["layers"]) for x in per_gen[-1])})
            print(f"{label} repeat {r}: best {final.val_accuracy:.4f} ({final.params} params), {time.time() - t0:.0f} s",
                  flush=True)
        rs = random_search(r, population=P, generations=G, args=args, ds=ds)
        curve = [max(c["val_accuracy"][g] for c in rs) for g in range(G + 1)]
        best = max(rs, key=lambda c: c["val_accuracy"][-1])
        results["RS"].append({"networks": rs, "best_val_accuracy_per_generation": curve, "final_best": best["val_accuracy"][-1],
                              "final_best_params": best["params"],
                              "final_mean_params": statistics.mean(c["params"] for c in rs),
                              "final_mean_depth": statistics.mean(len(c["genome"]["layers"]) for c in rs)})
        print(f"RS repeat {r}: best {best['val_accuracy'][-1]:.4f}, {time.time() - t0:.0f} s", flush=True)
        # saved after every repeat: a run cut short still leaves its measured repeats
        (out / "section51.json").write_text(json.dumps({"meta": _meta(args, time.time() - t0), "results": results},
                                                       indent=1))
    meta = _meta(args, time.time() - t0)
    (out / "section51.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    _plot51(results, out / "section51.png")
    print(json.dumps(_summary51(results), indent=1))


def fitness51(args) -> None:
    """The size-aware fitness (equation 1, the run's k and a_min) of each arm's final networks:
    EA populations are read from --work, RS networks from section51.json; the reference is each
    run's best initial network (RS: the best after its first epoch)."""
    from lse.algorithms import make_algorithm
    from lse.core.size_fitness import SizeFitness
    from lse.store import Store

    out = Path(args.out)
    data = json.loads((out / "section51.json").read_text())
    f = SizeFitness(k=0.5, a_min=args.a_min)
    table: dict = {}
    for label, runs in data["results"].items():
        for r, run in enumerate(runs):
            if label == "RS":
                nets = [(c["val_accuracy"][-1], c["params"]) for c in run.get("networks", [])]
                if not nets:
                    continue
                ref = max(run["networks"], key=lambda c: (c["val_accuracy"][0], -c["params"]))["params"]
            else:
                store = Store(Path(args.work) / f"s51-{label}-{r}").open()
                algo = make_algorithm(store.config)
                final = populations(Path(args.work) / f"s51-{label}-{r}")[-1]
                ref = algo.reference(store.records())
                nets = [(x.val_accuracy, x.params) for x in final]
            best = max(nets, key=lambda n: f(n[0], n[1], ref))
            table.setdefault(label, []).append({"best_fitness": f(best[0], best[1], ref), "its_accuracy": best[0],
                                                "its_params": best[1], "reference_params": ref})
    (out / "section51-fitness.json").write_text(json.dumps(table, indent=1))
    print(json.dumps(table, indent=1))


def _summary51(results) -> dict:
    s = {}
    for label, runs in results.items():
        finals = [r["final_best"] for r in runs]
        s[label] = {"final_best_mean": statistics.mean(finals), "final_best_sd": statistics.pstdev(finals),
                    "finals": finals, "mean_params": statistics.mean(r["final_mean_params"] for r in runs),
                    "mean_depth": statistics.mean(r["final_mean_depth"] for r in runs)}
    return s


def _plot51(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in results.items():
        n = min(len(r["best_val_accuracy_per_generation"]) for r in runs)
        curves = [r["best_val_accuracy_per_generation"][:n] for r in runs]
        mean = [statistics.mean(c[g] for c in curves) for g in range(n)]
        lo = [min(c[g] for c in curves) for g in range(n)]
        hi = [max(c[g] for c in curves) for g in range(n)]
        x = list(range(n))  # EA: P_1 (initial networks trained once) .. ; RS: after epoch 1 ..
        ax.plot(x, mean, label=f"{label} (mean of {len(runs)})")
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel("trainings per network (EA: P_1 = initial population trained once)")
    ax.set_ylabel("best validation accuracy in P")
    ax.set_title("EA4CNN 5.1, Fashion-MNIST, small scale (band: min-max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


SEED_NETWORK = {"layers": [{"kind": "conv", "id": 0, "kernel": 3, "filters": 16, "stride": 1, "padding": 1},
                           {"kind": "pool", "id": 1, "mode": "max", "size": 2, "stride": 2},
                           {"kind": "conv", "id": 2, "kernel": 3, "filters": 32, "stride": 1, "padding": 1},
                           {"kind": "pool", "id": 3, "mode": "max", "size": 2, "stride": 2}],
                "fc_width": 128, "learning_rate": 0.05, "next_id": 4}


def train_seed(folder: Path, args, ds) -> dict:
    """The hand-designed baseline (Fig. 4 top's role), trained in float; genome + weights."""
    import torch
    from safetensors.torch import save_file

    from lse.core.layerlist import LayerList
    from lse.nn.layerlist import build_layerlist
    from lse.nn.train import evaluate, train

    g = LayerList.model_validate(SEED_NETWORK)
    torch.manual_seed(0)
    model = build_layerlist(g, ds.input_shape, ds.num_classes)
    steps = math.ceil(ds.train_x.shape[0] * args.seed_epochs / 32)
    res = train(model, ds, learning_rate=g.learning_rate, steps=steps, batch_size=32, momentum=0.0, weight_decay=0.0,
                seed=0, augment=False)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))
    (folder / "genome.json").write_text(g.model_dump_json(indent=1))
    return {"params": sum(p.numel() for p in model.parameters()), "val_accuracy": res.val_accuracy,
            "test_accuracy": evaluate(model, ds.test_x, ds.test_y, 1000, dataset=ds), "epochs": args.seed_epochs}


def section52(args) -> None:
    import torch
    from safetensors.torch import load_file

    from lse.core.pareto import fronts
    from lse.core.size_fitness import energy_reduction
    from lse.nn.data import load_dataset
    from lse.nn.fixedpoint import fixed_point
    from lse.nn.genomes import build
    from lse.nn.train import evaluate
    from lse.store import Store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("fashion-mnist", validation_size=args.validation_size, seed=0)
    t0 = time.time()
    seed_dir = Path(args.work) / "seed-network"
    seed = train_seed(seed_dir, args, ds)
    print(f"seed network: {seed}, {time.time() - t0:.0f} s", flush=True)
    pop = Path(args.work) / "s52"
    run_population(pop, population=args.population, generations=args.generations, seed=0, args=args,
                   options={"k": 1.0, "seed_genome": SEED_NETWORK, "seed_weights": str(seed_dir / "weights.safetensors")})
    per_gen = populations(pop)
    store = Store(pop).open()
    final = per_gen[-1]
    # the final population's accuracy/params front (validation accuracy, float), then its test accuracies
    vecs = [(x.val_accuracy or 0.0, -float(x.params)) for x in final]
    front_idx = sorted(set(fronts(vecs)[0]), key=lambda i: final[i].params)
    seen, rows = set(), []
    for i in front_idx:
        rec = final[i]
        key = (json.dumps(rec.dna, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        entry = store.find(rec.id)
        state = load_file(str(store.paths.weights_file(entry.path)))
        model = build("layerlist", rec.dna, ds.input_shape, ds.num_classes)
        model.load_state_dict(state)
        test = evaluate(model, ds.test_x, ds.test_y, 1000, dataset=ds)
        with fixed_point(model):
            test_fx = evaluate(model, ds.test_x, ds.test_y, 1000, dataset=ds)
        rows.append({"id": rec.id, "params": rec.params, "layers": len(rec.dna["layers"]) + 2,
                     "val_fp": rec.objectives["val_accuracy"], "val_fx": rec.objectives["val_accuracy_fx"],
                     "test_fp": test, "test_fx": test_fx, "age": rec.age,
                     "e_fp": energy_reduction(seed["params"], rec.params, fixed_point=False),
                     "e_fx": energy_reduction(seed["params"], rec.params, fixed_point=True)})
    seed_model = build("layerlist", SEED_NETWORK, ds.input_shape, ds.num_classes)
    seed_model.load_state_dict(load_file(str(seed_dir / "weights.safetensors")))
    with fixed_point(seed_model):
        seed["test_accuracy_fx"] = evaluate(seed_model, ds.test_x, ds.test_y, 1000, dataset=ds)
    plane = [[{"params": x.params, "val_accuracy": x.val_accuracy, "age": x.age} for x in Pg] for Pg in per_gen]
    meta = _meta(args, time.time() - t0)
    (out / "section52.json").write_text(json.dumps({"meta": meta, "seed": seed, "front": rows, "plane": plane}, indent=1))
    _plot52(plane, rows, seed, out / "section52-plane.png", out / "section52-species.png")
    for r in rows:
        print(r)
    del torch


def _plot52(plane, rows, seed, path_plane: Path, path_species: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    cmap = plt.get_cmap("viridis")
    for g, Pg in enumerate(plane):
        ax.scatter([x["params"] for x in Pg], [x["val_accuracy"] for x in Pg], s=14, color=cmap(g / max(1, len(plane) - 1)),
                   label=f"P{g + 1}" if g in (0, len(plane) - 1) else None)
    ax.plot([r["params"] for r in rows], [r["val_fp"] for r in rows], "r-o", ms=4, label="final front")
    ax.axvline(seed["params"], color="grey", ls=":", label="seed network")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy (float)")
    ax.set_title("EA4CNN seeded run: accuracy/params over generations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_plane, dpi=110)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ages = sorted({x["age"] for Pg in plane for x in Pg})
    bottom = [0] * len(plane)
    for a in ages:
        counts = [sum(1 for x in Pg if x["age"] == a) for Pg in plane]
        ax.bar(range(1, len(plane) + 1), counts, bottom=bottom, label=f"age {a}")
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_xlabel("generation (population after it)")
    ax.set_ylabel("individuals")
    ax.set_title("species (age levels) over time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_species, dpi=110)


def _meta(args, seconds: float) -> dict:
    return {"machine": f"{platform.machine()} {os.cpu_count()} cores (shared), {platform.processor() or 'cpu'}",
            "torch_threads": 1, "wall_seconds": round(seconds, 1), **vars(args)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=["51", "52", "51-fitness"])
    p.add_argument("--out", default="docs/ea4cnn")
    p.add_argument("--work", default="/tmp/ea4cnn-work", help="populations go here (not committed)")
    p.add_argument("--population", type=int, default=8, help="|P| (paper: 8 MNIST, 12 CIFAR in 5.1; 15 in 5.2)")
    p.add_argument("--generations", type=int, default=6, help="G (paper: 20 in 5.1, 50 in 5.2)")
    p.add_argument("--repeats", type=int, default=3, help="runs per arm (paper: 5)")
    p.add_argument("--data-fraction", type=float, default=0.05, help="fraction of the training split that is one epoch")
    p.add_argument("--validation-size", type=int, default=2000, help="the fitness split (held out of training)")
    p.add_argument("--a-min", type=float, default=0.7, help="a_min (paper: 0.8 on MNIST)")
    p.add_argument("--seed-epochs", type=float, default=1.0, help="epochs of the seed network's training (5.2)")
    args = p.parse_args()
    _env()
    {"51": section51, "52": section52, "51-fitness": fitness51}[args.section](args)


if __name__ == "__main__":
    main()
