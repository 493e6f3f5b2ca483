"""`lse ae pipeline`: seed 000's two steps end to end, each stage with its own budget.

    stage 1   POP/autoencoders     lse launch --algorithm autoencoder (max_hours = ae budget)
    pick      TOPSIS over the alive front (lse ae rank)
    encode    OUT/encoded          the pick's codes of train/val/test, original split (lse ae encode)
    stage 2   OUT/stage2-encoded   the classifier evolution on the codes (max_hours = stage-2 budget),
                                   with --preset hour by default (the paper's defaults stall at
                                   this scale: docs/TWOSTEP.md)
    control   OUT/stage2-raw       the same configuration and budget on the raw images
    report    OUT/report           front over time, composed model on the test set, networks/hour

Both stage-2 runs use the same recipe and no augmentation (pad-and-crop has no meaning on a
code map), so the only difference between them is the input the classifiers see.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PipelineBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    workers: int = Field(1, ge=1)
    threads: int = Field(1, ge=1, description="torch threads per worker")
    ae_minutes: float = Field(5.0, gt=0, description="stage-1 wall-time budget")
    ae_steps: int = Field(300, ge=1, description="SGD steps per autoencoder")
    ae_population: int = Field(10, ge=2)
    s2_minutes: float = Field(5.0, gt=0, description="wall-time budget of each stage-2 run")
    s2_preset: str = Field("hour", description="stage 2's classifier configuration (lse launch --preset)")
    s2_steps: int | None = Field(None, ge=1, description="SGD steps per classifier (None: the preset's)")
    s2_population: int | None = Field(None, ge=2, description="classifier population (None: the preset's)")
    raw: bool = Field(True, description="also run stage 2 on the raw images with the same budget")
    validation_size: int = Field(5000, ge=10)
    seed: int = 0


def _stage(pop: Path, given: dict, b: PipelineBudget, echo) -> None:
    from lse.runners.launch import LaunchOptions, launch_local, prepare_experiment

    prepare_experiment(pop, given, workers=b.workers, echo=echo)
    launch_local(pop, LaunchOptions(workers=b.workers, threads=b.threads, device="auto"), echo=echo, progress=False)


def run_pipeline(out, b: PipelineBudget, echo=print) -> dict:
    from lse.config import apply_preset
    from lse.reports.twostep import choose, encode, write_report

    apply_preset(b.s2_preset, {})  # an unknown preset fails now, not after stage 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "budget.json").write_text(b.model_dump_json(indent=2))
    ae_pop, enc, s2, raw = out / "autoencoders", out / "encoded", out / "stage2-encoded", out / "stage2-raw"
    common = dict(data_dir=b.data_dir, validation_size=b.validation_size, seed=b.seed)
    t0 = time.time()
    echo(f"stage 1: autoencoders for {b.ae_minutes} min")
    _stage(ae_pop, dict(dataset=b.dataset, algorithm={"name": "autoencoder"}, steps=b.ae_steps,
                        population_size=b.ae_population, max_hours=b.ae_minutes / 60, augment=False, **common), b, echo)
    pick = choose(ae_pop)
    echo(f"TOPSIS pick: {pick.id} (compression {pick.compression:.3f}, reconstruction {pick.reconstruction:.3f}, "
         f"score {pick.topsis:.3f})")
    if not enc.exists():
        encode(ae_pop, enc, pick.id)
    echo(f"encoded data set in {enc}")
    chosen = {k: v for k, v in dict(steps=b.s2_steps, population_size=b.s2_population).items() if v is not None}
    s2_common = apply_preset(b.s2_preset, dict(**chosen, max_hours=b.s2_minutes / 60, augment=False, seed=b.seed))
    echo(f"stage 2 on codes for {b.s2_minutes} min")
    _stage(s2, dict(dataset="encoded", data_dir=str(enc), validation_size=b.validation_size, **s2_common), b, echo)
    if b.raw:
        echo(f"stage 2 on raw images for {b.s2_minutes} min (the control)")
        _stage(raw, dict(dataset=b.dataset, data_dir=b.data_dir, validation_size=b.validation_size, **s2_common), b, echo)
    res = write_report(out / "report", ae_pop=ae_pop, encoded_dir=enc, stage2_pop=s2, raw_pop=raw if b.raw else None)
    res["wall_minutes"] = (time.time() - t0) / 60
    echo(f"done in {res['wall_minutes']:.1f} min; report in {out / 'report'}")
    return res


def register_cli(ae) -> None:
    """``lse ae pipeline`` in the ``ae`` group of lse.reports.twostep."""
    import typer

    from lse.reports.twostep import run_or_exit as _run

    @ae.command("pipeline")
    def pipeline_cmd(out: Path = typer.Option(Path("twostep"), "--out", help="folder for every stage's output"),
                     dataset: str = typer.Option("fashion-mnist", "--dataset"),
                     data_dir: Path = typer.Option(None, "--data-dir"),
                     workers: int = typer.Option(1, "--workers", min=1),
                     threads: int = typer.Option(1, "--threads", min=1),
                     ae_minutes: float = typer.Option(5.0, "--ae-minutes", help="stage-1 budget (wall minutes)"),
                     ae_steps: int = typer.Option(300, "--ae-steps"),
                     ae_population: int = typer.Option(10, "--ae-population"),
                     s2_minutes: float = typer.Option(5.0, "--stage2-minutes", help="stage-2 budget, each run"),
                     s2_preset: str = typer.Option("hour", "--stage2-preset", help="stage 2's configuration (a --preset)"),
                     s2_steps: int = typer.Option(None, "--stage2-steps", help="default: the preset's"),
                     s2_population: int = typer.Option(None, "--stage2-population", help="default: the preset's"),
                     raw: bool = typer.Option(True, "--raw/--no-raw", help="also run stage 2 on raw data, same budget"),
                     validation_size: int = typer.Option(5000, "--validation-size"),
                     seed: int = typer.Option(0, "--seed")) -> None:
        """Both steps end to end: autoencoders, TOPSIS, encode, classifiers on codes (and on raw
        data with the same budget), report."""
        b = PipelineBudget(dataset=dataset, data_dir=None if data_dir is None else str(data_dir), workers=workers,
                           threads=threads, ae_minutes=ae_minutes, ae_steps=ae_steps, ae_population=ae_population,
                           s2_minutes=s2_minutes, s2_preset=s2_preset, s2_steps=s2_steps, s2_population=s2_population,
                           raw=raw,
                           validation_size=validation_size, seed=seed)
        _run(lambda: run_pipeline(out, b, echo=typer.echo))

