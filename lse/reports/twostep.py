"""Seed 000's reports: the autoencoder front and its TOPSIS pick, the encoded data set, the
composed final model on the test set, and networks evaluated per hour (raw vs compressed).

Everything a stage reads is on disk: the autoencoder population (front, pick, weights), the
encoded data set (codes, quantisation, encoder weights), the stage-2 populations (classifiers).
Test data are touched only here (the composed model's accuracy), never by any selection.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from lse.core.autoencoder import AutoencoderGenome, code_shape, render
from lse.core.pareto import fronts
from lse.core.topsis import topsis
from lse.errors import LseError
from lse.store import Store


class TwoStepError(LseError):
    pass


@dataclass
class Candidate:
    id: str
    compression: float
    reconstruction: float
    topsis: float
    front: int
    architecture: str
    born_at: float | None


def _ae_records(store: Store, alive_only: bool):
    recs = [r for r in (store.records() if not alive_only else _alive_records(store))
            if r.genome == "autoencoder" and r.fitness is not None
            and {"compression", "reconstruction"} <= set(r.objectives or {})]
    return recs


def _alive_records(store: Store):
    out = []
    for e in store.list_alive():
        rec = store.record(e.id)
        if rec is not None:
            out.append(rec)
    return out


def rank(pop, weights: tuple[float, float] = (0.5, 0.5)) -> list[Candidate]:
    """The alive autoencoders of ``pop`` by front (over the alive population, as selection
    saw it), each with its TOPSIS score; front 0 sorted by score first."""
    store = Store(pop, read_only=True).open()
    recs = _ae_records(store, alive_only=True)
    if not recs:
        raise TwoStepError(f"{pop} holds no alive trained autoencoder",
                           "run stage 1 first: lse launch --algorithm autoencoder --pop POP")
    pts = [(r.objectives["compression"], r.objectives["reconstruction"]) for r in recs]
    scores = topsis(pts, weights)
    front_of = {i: f for f, members in enumerate(fronts(pts)) for i in members}
    out = [Candidate(r.id, p[0], p[1], s, front_of[i], render(AutoencoderGenome.model_validate(r.dna)), r.born_at)
           for i, (r, p, s) in enumerate(zip(recs, pts, scores))]
    return sorted(out, key=lambda c: (c.front, -c.topsis, c.id))


def choose(pop, weights: tuple[float, float] = (0.5, 0.5)) -> Candidate:
    """The TOPSIS pick among the front (front 0 of the alive autoencoders)."""
    return next(c for c in rank(pop, weights) if c.front == 0)


# ------------------------------------------------------------------------------- encode
def encode(pop, out, individual: str | None = None, weights: tuple[float, float] = (0.5, 0.5)) -> dict:
    """Write the codes of ``individual`` (default: the TOPSIS pick) as a data set in ``out``."""
    import torch
    from safetensors.torch import load_file

    from lse.nn.autoencoder import Encoder, encoder_state
    from lse.nn.data import load_dataset
    from lse.nn.encoded import write_encoded

    store = Store(pop, read_only=True).open()
    cfg = store.config
    chosen = individual or choose(pop, weights).id
    entry = store.find(chosen)
    rec = store.record(chosen)
    if entry is None or rec is None or rec.genome != "autoencoder":
        raise TwoStepError(f"no autoencoder {chosen} in {pop}", "pick an id from `lse ae rank --pop POP`")
    wfile = store.paths.weights_file(entry.path)
    if not wfile.is_file():
        raise TwoStepError(f"{chosen} has no weights (collected)", "pick an alive individual from `lse ae rank`")
    genome = AutoencoderGenome.model_validate(rec.dna)
    enc = Encoder(genome)
    enc.load_state_dict(encoder_state(load_file(str(wfile))), strict=True)
    torch.set_grad_enabled(False)
    try:
        ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed)
        source = {"pop": str(Path(pop).resolve()), "individual": chosen, "objectives": rec.objectives,
                  "weights": list(weights), "dataset": cfg.dataset, "data_dir": cfg.data_dir}
        return write_encoded(Path(out), encoder=enc, genome_json=rec.dna, ds=ds, source=source)
    finally:
        torch.set_grad_enabled(True)


# ------------------------------------------------------------------------------- final model
def final_model(encoded_dir, stage2_pop) -> dict:
    """The composed model (encoder, quantisation, best classifier by validation accuracy) on the
    ORIGINAL test images, its FLOPs per example (encoder + classifier), and, as a check, the
    classifier alone on the stored test codes (must agree)."""
    import torch
    from safetensors.torch import load_file

    from lse.core.dna import DNA
    from lse.nn.composed import composed_model
    from lse.nn.data import load_dataset
    from lse.nn.encoded import read_meta
    from lse.nn.autoencoder import encoder_flops
    from lse.nn.train import evaluate

    meta = read_meta(Path(encoded_dir))
    store = Store(stage2_pop, read_only=True).open()
    alive = [e for e in store.list_alive() if e.fitness is not None]
    if not alive:
        raise TwoStepError(f"{stage2_pop} holds no alive classifier", "run stage 2 first")
    best = max(alive, key=lambda e: (e.fitness, e.id))
    rec = store.record(best.id)
    state = load_file(str(store.paths.weights_file(best.path)))
    codes = load_dataset("encoded", encoded_dir, validation_size=meta["sizes"]["val"])
    src = meta["source"]
    raw = load_dataset(src["dataset"], src.get("data_dir"), validation_size=meta["split"]["validation_size"],
                       seed=meta["split"]["seed"])
    if raw.split.val_indices_sha256 != meta["split"]["val_indices_sha256"]:
        raise TwoStepError("the raw data set's split differs from the one the codes were written with",
                           "use the same data files as the autoencoder experiment")
    genome = AutoencoderGenome.model_validate(meta["genome"])
    model = composed_model(genome, load_file(str(Path(encoded_dir) / "encoder.safetensors")),
                           meta["quantization_scale"], raw, codes, DNA.model_validate(rec.dna), state)
    with torch.no_grad():
        acc = evaluate(model, raw.test_x.float(), raw.test_y, 500)
    from lse.nn.build import build_model

    clf = build_model(DNA.model_validate(rec.dna), codes.input_shape, codes.num_classes)
    clf.load_state_dict(state, strict=True)
    clf.eval()
    acc_codes = evaluate(clf, codes.test_x, codes.test_y, 1000, dataset=codes)
    f_enc = encoder_flops(genome)
    f_clf = flops_per_example(DNA.model_validate(rec.dna), codes.input_shape, codes.num_classes)
    return {"classifier": best.id, "val_accuracy": rec.val_accuracy, "test_accuracy": acc,
            "test_accuracy_on_stored_codes": acc_codes, "encoder": src["individual"],
            "code_shape": list(code_shape(genome)), "flops_per_example": {"encoder": f_enc, "classifier": f_clf,
                                                                          "total": f_enc + f_clf}}


def flops_per_example(dna, input_shape, num_classes) -> int:
    """A classifier's evaluation FLOPs per example: counted on batches of 2 and halved (exact:
    every counted operation is linear in the batch).  A batch of 1 cannot be counted when a
    batch-normalised map is 1x1 (training-mode batch norm needs two values per channel), which
    the most compressed codes give."""
    from lse.nn.flops import count_flops

    return count_flops(dna, input_shape, num_classes, 2, 2).eval_per_batch // 2


def raw_final(pop) -> dict:
    """The best raw classifier (by validation accuracy) on the test set, for comparison."""
    from safetensors.torch import load_file

    from lse.core.dna import DNA
    from lse.nn.build import build_model
    from lse.nn.data import load_dataset
    from lse.nn.train import evaluate

    store = Store(pop, read_only=True).open()
    cfg = store.config
    alive = [e for e in store.list_alive() if e.fitness is not None]
    best = max(alive, key=lambda e: (e.fitness, e.id))
    rec = store.record(best.id)
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed)
    m = build_model(DNA.model_validate(rec.dna), ds.input_shape, ds.num_classes)
    m.load_state_dict(load_file(str(store.paths.weights_file(best.path))), strict=True)
    m.eval()
    return {"classifier": best.id, "val_accuracy": rec.val_accuracy,
            "test_accuracy": evaluate(m, ds.test_x, ds.test_y, 1000, dataset=ds),
            "flops_per_example": flops_per_example(DNA.model_validate(rec.dna), ds.input_shape, ds.num_classes)}


# ------------------------------------------------------------------------------- throughput
def networks_per_hour(pop) -> dict:
    """Networks trained and evaluated (every birth, alive or failed) per hour of the run: from
    the first child's start to the last birth."""
    recs = Store(pop, read_only=True).open().records()
    starts = [r.extra.get("started_at") for r in recs if isinstance(r.extra.get("started_at"), (int, float))]
    born = [r.born_at for r in recs if r.born_at is not None]
    if not born or not starts:
        return {"networks": len(recs), "hours": None, "per_hour": None}
    hours = (max(born) - min(starts)) / 3600.0
    train = [r.train_seconds for r in recs if r.train_seconds]
    return {"networks": len(recs), "hours": hours, "per_hour": len(recs) / hours if hours > 0 else None,
            "mean_train_seconds": sum(train) / len(train) if train else None,
            "best_val_accuracy": max((r.val_accuracy for r in recs if r.val_accuracy is not None), default=None)}


# ------------------------------------------------------------------------------- figures
def front_axes(ax) -> None:
    """The axes of a front figure: compression against reconstruction, both in [0, 1]."""
    ax.set_xlabel("compression c = 1 - |z|/|x|")
    ax.set_ylabel("reconstruction accuracy R (explained variance, validation)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower left")


def front_figure(pop, out_png, weights: tuple[float, float] = (0.5, 0.5)) -> dict:
    """Every autoencoder that ever lived (colour: birth order), the front of those born by
    25/50/75/100% of the run (front over time), front 1 of the final alive population
    highlighted, the TOPSIS pick marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = Store(pop, read_only=True).open()
    recs = sorted(_ae_records(store, alive_only=False), key=lambda r: r.id)
    cands = rank(pop, weights)
    pick = next(c for c in cands if c.front == 0)
    fig, ax = plt.subplots(figsize=(7, 5))
    pts = [(r.objectives["compression"], r.objectives["reconstruction"]) for r in recs]
    sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=range(len(pts)), cmap="viridis", s=14, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="birth order")
    for frac, style in ((0.25, ":"), (0.5, "-."), (0.75, "--")):
        upto = pts[: max(1, math.ceil(frac * len(pts)))]
        f0 = sorted((upto[i] for i in fronts(upto)[0]), key=lambda p: p[0])
        ax.plot([p[0] for p in f0], [p[1] for p in f0], style, color="grey", lw=1, label=f"front after {int(frac*100)}% of births")
    f1 = sorted(((c.compression, c.reconstruction) for c in cands if c.front == 0))
    ax.plot([p[0] for p in f1], [p[1] for p in f1], "o-", color="crimson", ms=6, mfc="none", label="front 1 (alive at the end)")
    ax.scatter([pick.compression], [pick.reconstruction], marker="*", s=260, color="orange", edgecolor="k", zorder=5,
               label=f"TOPSIS pick ({pick.topsis:.3f})")
    front_axes(ax)
    ax.set_title(f"{len(pts)} autoencoders")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return {"autoencoders": len(pts), "front": [asdict(c) for c in cands if c.front == 0], "pick": asdict(pick)}


def throughput_figure(pops: dict[str, Path], out_png) -> None:
    """Cumulative networks evaluated against hours, one curve per stage-2 run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, pop in pops.items():
        recs = Store(pop, read_only=True).open().records()
        starts = [r.extra.get("started_at") for r in recs if isinstance(r.extra.get("started_at"), (int, float))]
        if not starts:
            continue
        t0 = min(starts)
        born = sorted((r.born_at - t0) / 3600 for r in recs if r.born_at is not None)
        a1.step(born, range(1, len(born) + 1), where="post", label=label)
        best, xs, ys = 0.0, [], []
        for r in sorted(recs, key=lambda r: r.born_at or 0):
            if r.val_accuracy is not None and r.born_at is not None:
                best = max(best, r.val_accuracy)
                xs.append((r.born_at - t0) / 3600)
                ys.append(best)
        a2.step(xs, ys, where="post", label=label)
    a1.set_xlabel("hours")
    a1.set_ylabel("networks trained and evaluated")
    a2.set_xlabel("hours")
    a2.set_ylabel("best validation accuracy so far")
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def write_report(out, *, ae_pop, encoded_dir, stage2_pop, raw_pop=None, weights=(0.5, 0.5)) -> dict:
    """Figures and ``twostep.json`` of a finished two-step run into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"stage1": front_figure(ae_pop, out / "twostep-front.png", weights)}
    res["final"] = final_model(encoded_dir, stage2_pop)
    res["stage2_encoded"] = networks_per_hour(stage2_pop)
    pops = {"encoded": Path(stage2_pop)}
    if raw_pop is not None:
        res["stage2_raw"] = networks_per_hour(raw_pop)
        res["raw_final"] = raw_final(raw_pop)
        pops = {"raw": Path(raw_pop), **pops}
    throughput_figure(pops, out / "twostep-stage2.png")
    (out / "twostep.json").write_text(json.dumps(res, indent=2, default=str))
    return res


# ------------------------------------------------------------------------------- CLI (thin)
def run_or_exit(fn):
    """A command's work: its result, or its LseError / ValueError as one line and exit 2."""
    import typer

    try:
        return fn()
    except (LseError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def register_cli(app):
    """``lse ae rank/encode/report``; returns the ``ae`` group (lse.runners.twostep adds
    ``pipeline``, which runs evolutions: a runner, below this layer's readers)."""
    import typer

    ae = typer.Typer(help="Seed 000's two-step evolution: autoencoders, TOPSIS, encoded data, composed model.",
                     no_args_is_help=True)

    def _weights(w: str) -> tuple[float, float]:
        try:
            a, b = (float(x) for x in w.split(","))
        except ValueError:
            raise typer.BadParameter("give two numbers, compression,reconstruction (e.g. 0.5,0.5)") from None
        return a, b

    _run = run_or_exit

    @ae.command("rank")
    def rank_cmd(pop: Path = typer.Option(..., "--pop", help="a stage-1 (autoencoder) population"),
                 weights: str = typer.Option("0.5,0.5", "--weights", help="TOPSIS weights: compression,reconstruction"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
        """Rank the alive autoencoders' front by TOPSIS and name the pick."""
        cands = _run(lambda: rank(pop, _weights(weights)))
        front = [c for c in cands if c.front == 0]
        if as_json:
            typer.echo(json.dumps({"front": [asdict(c) for c in front], "pick": front[0].id}, indent=2))
            return
        typer.echo(f"{'id':<32} {'compr.':>7} {'recon.':>7} {'TOPSIS':>7}  architecture")
        for c in front:
            typer.echo(f"{c.id:<32} {c.compression:7.3f} {c.reconstruction:7.3f} {c.topsis:7.3f}  {c.architecture}")
        typer.echo(f"pick: {front[0].id} (TOPSIS {front[0].topsis:.3f}; {len(cands)} alive, {len(front)} on the front)")

    @ae.command("encode")
    def encode_cmd(pop: Path = typer.Option(..., "--pop", help="a stage-1 (autoencoder) population"),
                   out: Path = typer.Option(..., "--out", help="new folder for the encoded data set"),
                   individual: str = typer.Option(None, "--id", help="autoencoder to use (default: the TOPSIS pick)"),
                   weights: str = typer.Option("0.5,0.5", "--weights", help="TOPSIS weights: compression,reconstruction")) -> None:
        """Write the chosen encoder's codes of train/validation/test (the original split)."""
        meta = _run(lambda: encode(pop, out, individual, _weights(weights)))
        typer.echo(f"wrote {out}: codes {meta['input_shape']} of {meta['source']['individual']} "
                   f"(train {meta['sizes']['train']}, val {meta['sizes']['val']}, test {meta['sizes']['test']})\n"
                   f"  stage 2: python -m lse.launch --dataset encoded --data-dir {out} "
                   f"--validation-size {meta['sizes']['val']} --pop POP2")

    @ae.command("report")
    def report_cmd(ae_pop: Path = typer.Option(..., "--ae-pop"), encoded: Path = typer.Option(..., "--encoded"),
                   pop: Path = typer.Option(..., "--pop", help="the stage-2 population (classifiers on codes)"),
                   raw_pop: Path = typer.Option(None, "--raw-pop", help="stage 2 on raw data, same budget"),
                   out: Path = typer.Option(Path("reports/twostep"), "--out")) -> None:
        """Front over time + pick, composed model on the test set (FLOPs summed), networks/hour."""
        res = _run(lambda: write_report(out, ae_pop=ae_pop, encoded_dir=encoded, stage2_pop=pop, raw_pop=raw_pop))
        f = res["final"]
        typer.echo(f"composed model: test accuracy {f['test_accuracy']:.4f}, "
                   f"{f['flops_per_example']['total']:,} FLOPs/example; report in {out}")

    app.add_typer(ae, name="ae")
    return ae
