"""``lse export`` and ``lse predict``: a population's model out as a file, and predictions with it.

The work is in :mod:`lse.nn.export`; here are the commands and image decoding for ``predict``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lse.errors import ConfigError, DataError, LseError


def read_images(paths: list[Path], input_shape: tuple[int, int, int]) -> np.ndarray:
    """Image files -> float32 (N, C, H, W) raw pixels in [0, 255], converted to the model's
    channels and resized (bilinear) to its size, as training decoded them."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    c, h, w = input_shape
    out = []
    for p in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(p) as im:
                    im = im.convert("L" if c == 1 else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                    a = np.asarray(im, dtype=np.float32)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            raise DataError(f"cannot read image {p} ({type(e).__name__}: {e})".replace("\n", " "),
                            "give PNG or JPEG files") from None
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(out)


def predict(target: str | os.PathLike, images: list[Path], which: str = "best") -> list[dict]:
    """Class and probabilities per image, with an exported file or a population's model."""
    import torch

    from lse.nn import export as ex
    from lse.reports import models

    target = Path(target)
    if target.is_dir():
        loaded = models.load(target, which)
        classes, shape = loaded.classes, loaded.input_shape
        x = read_images(images, shape)
        with torch.no_grad():
            logits = loaded.standalone()(torch.from_numpy(x)).numpy()
    elif target.is_file():
        fmt = ex.format_of(target)
        meta = ex.file_meta(target)
        classes, shape = tuple(meta["classes"]), tuple(meta["input_shape"])
        x = read_images(images, shape)  # type: ignore[arg-type]
        logits = np.asarray(ex.run_file(target, fmt, x))
    else:
        raise ConfigError(f"{target} is neither a population folder nor an exported model file",
                          "give a --pop folder or a file written by `lse export`")
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = []
    for path, p in zip(images, probs):
        k = int(np.argmax(p))
        rows.append({"image": str(path), "class": classes[k], "index": k,
                     "probabilities": {name: float(v) for name, v in zip(classes, p)}})
    return rows


def register_cli(app) -> None:
    import typer

    @app.command("export")
    def export_cmd(
        which: str = typer.Argument("best", help="best | ensemble (the report's top-2 by validation) | an individual id"),
        pop: Path = typer.Option(Path("population"), "--pop", help="population folder"),
        fmt: str = typer.Option("onnx", "--format", help="onnx | torchscript | pt2 (torch.export)"),
        out: Path = typer.Option(None, "--out", help="file to write (default: model.<format>); FILE.json is its sidecar"),
    ) -> None:
        """Write a standalone model (preprocessing inside: raw NCHW pixels in [0, 255] in, logits out;
        class names embedded) that runs without lse; checked against the population's model."""
        try:
            import torch

            from lse.nn import export as ex
            from lse.reports import models

            if fmt not in ex.FORMATS:
                raise ConfigError(f"--format {fmt!r}", f"valid: {', '.join(ex.FORMATS)}")
            if fmt == "onnx":
                try:
                    import onnx, onnxruntime, onnxscript  # noqa: F401,E401
                except ImportError as e:
                    raise ConfigError(f"--format onnx needs {e.name}", "pip install 'lse[export]'") from None
            loaded = models.load(pop, which)
            sample = _sample(pop, loaded)
            out = out or Path(f"model.{ {'onnx': 'onnx', 'torchscript': 'pt', 'pt2': 'pt2'}[fmt] }")
            meta = ex.export(loaded, fmt, out, torch.from_numpy(sample))
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        c = meta["checked"]
        typer.echo(f"wrote {out} ({fmt}, {meta['kind']}: {', '.join(meta['ids'])}; classes {', '.join(meta['classes'])}); "
                   f"loaded back: max logit difference {c['max_abs_logit_difference']:.2g} on {c['images']} test images "
                   f"(tolerance {meta['tolerance']:g}); sidecar {out}.json")

    @app.command("predict")
    def predict_cmd(
        model: Path = typer.Argument(..., help="a file written by `lse export`, or a population folder"),
        images: list[Path] = typer.Argument(..., help="PNG/JPEG files"),
        which: str = typer.Option("best", "--which", help="with a population: best | ensemble | an individual id"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable"),
    ) -> None:
        """Class name and probabilities per image."""
        try:
            rows = predict(model, images, which)
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
            typer.echo(f"{r['image']}: {r['class']} ({', '.join(f'{k} {v:.3f}' for k, v in top)})")


def _sample(pop: Path, loaded, n: int = 64) -> np.ndarray:
    """Up to ``n`` real test images (uint8 NCHW) and 8 of random pixels to check an export with
    (only random ones when the data set cannot be read here)."""
    from lse.nn.data import load_dataset
    from lse.store.population import Store

    try:
        cfg = Store(pop, read_only=True).open().config
        ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed,
                          image=cfg.image_options(), flip=cfg.flip)
        real = ds.test_x[:n].cpu().numpy() if tuple(ds.input_shape) == tuple(loaded.input_shape) else None
    except LseError:
        real = None
    noise = np.random.default_rng(0).integers(0, 256, (8 if real is not None else n, *loaded.input_shape), dtype=np.uint8)
    return noise if real is None else np.concatenate([real, noise])
