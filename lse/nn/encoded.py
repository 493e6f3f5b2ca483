"""Seed 000, between the steps: a data set of an autoencoder's codes, and reading it back.

``lse ae encode`` writes the chosen encoder's codes of the train, validation and test splits of
the autoencoder experiment's OWN split (same data set, validation size and seed), so the test
set stays the one no selection has seen.  ``lse launch --dataset encoded --data-dir FOLDER``
then runs the unchanged classifier evolution on it.

Codes are stored as uint8, like every data set here (lse.nn.data keeps images as uint8 and
normalises batches on the device): the encoder ends in a ReLU, so codes are >= 0, and each
channel is quantised linearly, q = clamp(round(z * 255 / max_c), 0, 255), with max_c the
channel's largest code over the TRAINING split (never the test split).  The composed model
(lse.nn.composed) applies the same quantisation, so it sees exactly what the classifiers saw.

Folder layout (published by one rename of a private folder):

    encoded.json          what it is: source population and individual, genome, code shape,
                          quantisation, split, classes
    codes.safetensors     train_x, val_x, test_x (uint8 N x C x H x W), train_y, val_y, test_y
    encoder.safetensors   the encoder's weights (tensor names as in the autoencoder)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from lse.errors import DataError

FORMAT = "lse-encoded"
VERSION = 1
META_FILE = "encoded.json"
CODES_FILE = "codes.safetensors"
ENCODER_FILE = "encoder.safetensors"
SPLITS = ("train", "val", "test")


def quantize(z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Codes (N, C, H, W) float -> uint8 with per-channel ``scale`` (C,) = 255 / max_c."""
    return torch.clamp(torch.round(z * scale.view(1, -1, 1, 1)), 0, 255).to(torch.uint8)


@torch.no_grad()
def encode_split(encoder, x_uint8: torch.Tensor, ds, batch_size: int = 1000) -> torch.Tensor:
    """The float codes of uint8 images ``x_uint8`` (normalised with ``ds``'s statistics)."""
    encoder.eval()
    scale, shift = ds.normalization("cpu")
    out = [encoder(x_uint8[i: i + batch_size].float() * scale + shift) for i in range(0, x_uint8.shape[0], batch_size)]
    return torch.cat(out)


def write_encoded(out: Path, *, encoder, genome_json: dict, ds, source: dict, batch_size: int = 1000) -> dict:
    """Encode ``ds``'s three splits with ``encoder`` and publish the folder ``out`` (must not
    exist).  Returns the metadata written."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists():
        raise DataError(f"{out} exists", "choose a new --out folder (an encoded data set is never overwritten)")
    codes = {s: encode_split(encoder, getattr(ds, f"{s}_x"), ds, batch_size) for s in SPLITS}
    top = codes["train"].amax(dim=(0, 2, 3))  # training split only: the test set informs nothing
    scale = torch.where(top > 0, 255.0 / top, torch.ones_like(top))
    tensors = {}
    for s in SPLITS:
        tensors[f"{s}_x"] = quantize(codes[s], scale).contiguous()
        tensors[f"{s}_y"] = getattr(ds, f"{s}_y").to("cpu", torch.int64).contiguous()
    meta = {
        "format": FORMAT, "version": VERSION, "source": source, "genome": genome_json,
        "input_shape": list(tensors["train_x"].shape[1:]), "source_input_shape": list(ds.input_shape),
        "num_classes": int(ds.num_classes), "quantization_scale": [float(v) for v in scale],
        "split": ds.split.to_dict(), "sizes": {s: int(tensors[f"{s}_x"].shape[0]) for s in SPLITS},
        "source_dataset": ds.name,
    }
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(tensors, str(tmp / CODES_FILE))
        save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp / ENCODER_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, out)  # one rename publishes the whole data set
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def read_meta(folder: Path) -> dict:
    folder = Path(folder)
    fix = "pass the folder `lse ae encode` wrote as --data-dir"
    path = folder / META_FILE
    if path.is_symlink() or not path.is_file():
        raise DataError(f"{folder} holds no {META_FILE} (not an encoded data set)", fix)
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {path} ({type(e).__name__})", "the file is damaged; write the data set again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path} is not an lse encoded data set", fix)
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise DataError(f"{path} has version {meta.get('version')!r} (this lse reads up to {VERSION})", "upgrade lse")
    for key in ("num_classes", "quantization_scale", "genome", "source_input_shape"):
        if key not in meta:
            raise DataError(f"{path} lacks {key!r}", "the file is damaged; write the data set again")
    return meta


def load_encoded(folder, validation_size: int, device="cpu"):
    """The encoded data set in ``folder`` as an lse.nn.data.Dataset, split as it was written.
    ``validation_size`` must equal the stored validation split (the split is never redrawn)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lse.nn.data import Dataset, SplitInfo, register_dataset

    if folder is None:
        raise DataError("the encoded data set needs its folder", "pass --data-dir FOLDER written by `lse ae encode`")
    folder = Path(folder)
    meta = read_meta(folder)
    path = folder / CODES_FILE
    fix = "the file is damaged; write the data set again with `lse ae encode`"
    if path.is_symlink() or not path.is_file():
        raise DataError(f"{folder} lacks {CODES_FILE}", fix)
    try:
        t = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"cannot read {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__})", fix) from None
    k = int(meta["num_classes"])
    shape = None
    for s in SPLITS:
        x, y = t.get(f"{s}_x"), t.get(f"{s}_y")
        if x is None or y is None:
            raise DataError(f"{path} lacks the {s} split", fix)
        if x.dtype != torch.uint8 or x.dim() != 4 or y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise DataError(f"{path}: {s} split is {x.dtype} {tuple(x.shape)} / {y.dtype} {tuple(y.shape)}, "
                            "expected uint8 N x C x H x W codes and N int64 labels", fix)
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise DataError(f"{path}: {s} codes are {tuple(x.shape[1:])}, train codes {shape}", fix)
        shape = tuple(int(v) for v in x.shape[1:])
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
            raise DataError(f"{path}: {s} labels outside 0..{k - 1}", fix)
    n_val = int(t["val_x"].shape[0])
    if validation_size != n_val:
        raise DataError(f"{folder} keeps its own split with {n_val} validation examples, not {validation_size}",
                        f"launch with --validation-size {n_val}")
    tx = t["train_x"]
    flat = tx.transpose(0, 1).reshape(tx.shape[1], -1).double()
    mean = tuple(float(m) for m in flat.mean(1))
    std = tuple(max(float(v), 1e-3) for v in flat.std(1, unbiased=False))
    sp = meta.get("split") or {}
    split = SplitInfo(seed=int(sp.get("seed", 0)), train_size=int(tx.shape[0]), validation_size=n_val,
                      test_size=int(t["test_x"].shape[0]),
                      val_indices_sha256=str(sp.get("val_indices_sha256") or hashlib.sha256(b"").hexdigest()))
    dev = torch.device(device)
    ds = Dataset(name="encoded", **{f"{s}_{v}": t[f"{s}_{v}"].to(dev) for s in SPLITS for v in "xy"},
                 input_shape=shape, num_classes=k, flip=False, split=split, mean=mean, std=std,
                 source=str(folder), device=str(dev))
    register_dataset(ds)
    return ds
