"""The model out: a population's individual (or its top-2 ensemble) as a model that runs anywhere.

* :func:`lse.reports.models.load` -- ``lse.load(pop, "best" | "ensemble" | ID)``: the trained
  ``nn.Module`` in eval mode and its preprocessing (a :class:`Preprocess` module), plus class
  names; it reads the population, this module only builds and writes torch modules.
* :func:`export` -- ``lse export``: one standalone file, preprocessing inside, in ONNX,
  TorchScript or ``torch.export`` (.pt2) form, that loads in a process without lse.  Input: a
  raw image batch, NCHW at the training size, pixel values in [0, 255] (float32; TorchScript
  also takes uint8).  Output: logits (one model) or the log of the mean softmax of the members
  (the ensemble; argmax of it is the report's vote except where the two members disagree and
  a third class has the larger mean probability).  Class names travel inside the file (ONNX
  ``metadata_props["classes"]``, a TorchScript extra file ``classes.json``, a .pt2 extra file
  ``classes.json``) and in a JSON sidecar ``FILE.json``.  Every export is loaded back with its
  real runtime (onnxruntime, ``torch.jit.load``, ``torch.export.load``) and compared with the
  population's model on real images; it is refused when logits differ by more than
  :data:`TOLERANCE`.

Which individuals: ``best`` is the highest validation accuracy that still has weights;
``ensemble`` the top-2 by validation that still have weights, as ``lse report`` picks them
(lse.reports.report.ensemble); an id (or a unique prefix of one) names one individual;
``retrained:<id>-<n>`` a final model of ``lse retrain`` (POP/retrained/).  The
normalisation is the training split's per-channel mean and std (recorded in POP/classes.json at
launch; recomputed from the data set for older populations).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lse.errors import ConfigError, LseError

#: max |difference| of logits between the population's model and a loaded export
TOLERANCE = 1e-3
FORMATS = ("onnx", "torchscript", "pt2")


class Preprocess(nn.Module):
    """Raw pixels in [0, 255] (uint8 or float), NCHW -> the standardised float32 the model was
    trained on: ``x * (1/std) - mean/std`` per channel, the training split's statistics."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        std_t = torch.tensor([float(s) for s in std], dtype=torch.float32)
        mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32)
        self.register_buffer("scale", (1.0 / std_t).view(1, -1, 1, 1))
        self.register_buffer("shift", (-mean_t / std_t).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) * self.scale + self.shift


class Standalone(nn.Module):
    """Preprocessing and one model: raw pixels in, logits out."""

    def __init__(self, preprocess: Preprocess, model: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.model = preprocess, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))


class Ensemble(nn.Module):
    """The members on preprocessed input: log of their mean softmax out."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(z).float(), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-30))


@dataclass
class Loaded:
    """What :func:`lse.reports.models.load` returns; ``model, preprocess = lse.load(pop)`` unpacks the first two."""

    model: nn.Module  # eval mode; takes preprocessed input (or use .standalone()); an Ensemble for two
    preprocess: Preprocess
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    ids: tuple[str, ...]  # the individuals inside (two for an ensemble)
    pop: str = ""
    val_accuracy: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.model, self.preprocess))

    def standalone(self) -> nn.Module:
        """Preprocessing and model in one module: raw pixels in [0, 255] in, logits out."""
        return Standalone(self.preprocess, self.model).eval()

    def meta(self) -> dict:
        c, h, w = self.input_shape
        return {"classes": list(self.classes), "input_shape": [c, h, w], "ids": list(self.ids), "pop": self.pop,
                "kind": "ensemble" if len(self.ids) > 1 else "single",
                "input": f"NCHW (N, {c}, {h}, {w}), raw pixels in [0, 255]",
                "output": "log of the members' mean softmax" if len(self.ids) > 1 else "logits",
                "mean": [float(v) for v in (-self.preprocess.shift / self.preprocess.scale).flatten()],
                "std": [float(v) for v in (1.0 / self.preprocess.scale).flatten()],
                "val_accuracy": self.val_accuracy}


def export(loaded: Loaded, fmt: str, out: str | os.PathLike, sample: torch.Tensor) -> dict:
    """Write ``loaded`` as ``fmt`` to ``out`` (+ ``out.json``), load it back with its runtime and
    compare logits on ``sample`` (raw uint8 NCHW images); return the sidecar's content."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}", f"valid: {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder", "give a file name, e.g. model.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    module = loaded.standalone().cpu()
    x = sample.to(torch.float32).cpu()
    meta = {**loaded.meta(), "format": fmt, "tolerance": TOLERANCE}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp" + (".pt2" if fmt == "pt2" else ""))  # .pt2: its loader wants it
    try:
        with torch.no_grad():
            expected = module(x)
        if fmt == "torchscript":
            traced = torch.jit.trace(module, x[:1], check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={"classes.json": json.dumps(meta)})
        elif fmt == "pt2":
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            ep = torch.export.export(module, (x[:2] if len(x) > 1 else x.repeat(2, 1, 1, 1),),
                                     dynamic_shapes=({0: batch},))
            torch.export.save(ep, str(tmp), extra_files={"classes.json": json.dumps(meta)})
        else:
            _export_onnx(module, x, tmp, meta)
        got = run_file(tmp, fmt, x.numpy())
    except LseError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:  # an exporter that cannot express this model: say which, write nothing
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"exporting {', '.join(loaded.ids)} to {fmt} failed ({type(e).__name__}: {e})"[:400]
                          .replace("\n", " "), "try another --format") from None
    diff = float((torch.as_tensor(got) - expected).abs().max()) if len(x) else 0.0
    if not diff <= TOLERANCE:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"the {fmt} export differs from the population's model by {diff:.3g} (> {TOLERANCE})",
                          "try another --format")
    meta["checked"] = {"images": int(len(x)), "max_abs_logit_difference": diff}
    os.replace(tmp, out)
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _export_onnx(module: nn.Module, x: torch.Tensor, path: Path, meta: dict) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example = x[:2] if len(x) > 1 else x.repeat(2, 1, 1, 1)
    prog = torch.onnx.export(module, (example,), dynamo=True, input_names=["image"], output_names=["logits"],
                             dynamic_shapes=({0: batch},), verbose=False)
    prog.save(str(path))
    model = onnx.load(str(path))
    for k, v in (("classes", json.dumps(meta["classes"])), ("lse", json.dumps(meta))):
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))


def run_file(path: str | os.PathLike, fmt: str, x):
    """Logits of a standalone file on ``x`` (float32 NCHW numpy) with the format's own runtime."""
    import numpy as np

    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        if fmt == "torchscript":
            return torch.jit.load(str(path)).eval()(t).numpy()
        return torch.export.load(str(path)).module()(t).numpy()


def format_of(path: str | os.PathLike) -> str:
    """onnx | torchscript | pt2, from the sidecar, else the file name."""
    try:
        return json.loads(Path(str(path) + ".json").read_text())["format"]
    except (OSError, ValueError, KeyError):
        pass
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnx", ".pt2": "pt2"}.get(suffix, "torchscript")


def file_meta(path: str | os.PathLike) -> dict:
    """The metadata inside an exported file (falls back on its sidecar)."""
    fmt = format_of(path)
    try:
        if fmt == "onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            return json.loads(props["lse"])
        extra = {"classes.json": ""}
        if fmt == "torchscript":
            torch.jit.load(str(path), _extra_files=extra)
        else:
            torch.export.load(str(path), extra_files=extra)
        return json.loads(extra["classes.json"])
    except Exception:
        return json.loads(Path(str(path) + ".json").read_text())
