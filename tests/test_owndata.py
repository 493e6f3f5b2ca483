"""A user's own images (lse.nn.images): a folder or a .npz goes in through `lse launch
--dataset`, every bad input is refused with one line naming the file, and nothing is created."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lse.cli import app
from lse.errors import DataError
from lse.nn.data import load_dataset

CLASSES = ("cat", "dog", "owl")


def make_folder(root: Path, n: int = 10, size=(12, 12), colour: bool = False, test: bool = False) -> Path:
    """Three learnable classes: each a different mean brightness (and hue, in colour)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test") if test else ("train",):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "train" else 3):
                a = (rng.random((*size, 3) if colour else size) * 60 + c * 90).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def make_npz(path: Path, n: int = 30, nchw: bool = False, floats: bool = False, test: bool = True) -> Path:
    rng = np.random.default_rng(1)
    y = np.arange(n) % 3
    x = (rng.random((n, 12, 12, 3)) * 60 + y[:, None, None, None] * 90).astype(np.uint8)
    if nchw:
        x = x.transpose(0, 3, 1, 2)
    arrays = dict(x_train=x.astype(np.float32) / 255 if floats else x, y_train=y, class_names=np.array(CLASSES))
    if test:
        arrays.update(x_test=arrays["x_train"][:6], y_test=y[:6])
    np.savez(path, **arrays)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSE_CACHE", str(tmp_path / "cache"))


def launch(pop: Path, *args: str):
    res = CliRunner().invoke(app, ["launch", "--pop", str(pop), "--prepare-only", "--validation-size", "10",
                                   "--population-size", "4", *args])
    return res


def test_folder_loads_with_names_split_and_training_statistics(tmp_path):
    root = make_folder(tmp_path / "imgs")
    ds = load_dataset("folder", root, validation_size=6, seed=0, cache=False)
    assert ds.classes == CLASSES and ds.num_classes == 3 and ds.input_shape == (1, 12, 12)
    assert len(ds.train_x) + len(ds.val_x) + len(ds.test_x) == 30
    # stratified: every class held out in the test set, recorded with its hash
    assert sorted(set(ds.test_y.tolist())) == [0, 1, 2] and ds.test_split["size"] == len(ds.test_x)
    assert ds.record()["classes"] == list(CLASSES)
    assert ds.mean[0] == pytest.approx(float(ds.train_x.float().mean()), rel=1e-5)  # training split only
    cached = list((tmp_path / "cache" / "images").glob("*.npz"))
    assert len(cached) == 1
    # a changed file invalidates the cache
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(root / "train" / "cat" / "0.png")
    os.utime(root / "train" / "cat" / "0.png", ns=(1, 1))
    load_dataset("folder", root, validation_size=6, seed=0, cache=False)
    assert len(list((tmp_path / "cache" / "images").glob("*.npz"))) == 2


def test_folder_resize_colour_and_test_folder(tmp_path):
    root = make_folder(tmp_path / "imgs", colour=True, test=True)
    ds = load_dataset("folder", root, validation_size=6, cache=False, image={"image_size": (8, 10)})
    assert ds.input_shape == (3, 8, 10) and len(ds.test_x) == 9 and ds.test_split is None
    grey = load_dataset("folder", root, validation_size=6, cache=False, image={"channels": 1})
    assert grey.input_shape == (1, 12, 12)


@pytest.mark.parametrize("nchw,floats", [(False, False), (True, True)])
def test_npz_layouts(tmp_path, nchw, floats):
    path = make_npz(tmp_path / "d.npz", nchw=nchw, floats=floats)
    ds = load_dataset("npz", path, validation_size=6, cache=False)
    assert ds.input_shape == (3, 12, 12) and ds.classes == CLASSES and len(ds.test_x) == 6
    ref = load_dataset("npz", make_npz(tmp_path / "u.npz"), validation_size=6, cache=False)
    assert (ds.train_x.int() - ref.train_x.int()).abs().max() <= 1  # floats in [0, 1] scale by 255


def test_launch_on_folder_writes_config_and_classes(tmp_path):
    root = make_folder(tmp_path / "imgs")
    res = launch(tmp_path / "pop", "--dataset", f"folder:{root}", "--image-size", "12x12")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "pop" / "experiment.json").read_text())
    assert cfg["dataset"] == "folder" and cfg["data_dir"] == str(root.resolve()) and cfg["image_size"] == [12, 12]
    assert json.loads((tmp_path / "pop" / "classes.json").read_text())["classes"] == list(CLASSES)
    # a bare path to a .npz works too
    res = launch(tmp_path / "pop2", "--dataset", str(make_npz(tmp_path / "d.npz")))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "pop2" / "experiment.json").read_text())["dataset"] == "npz"


def _bad_folder(tmp_path: Path, case: str) -> tuple[Path, str]:
    root = make_folder(tmp_path / "imgs")
    if case == "empty class":
        for f in (root / "train" / "dog").iterdir():
            f.unlink()
        return root, "class 'dog' has no images"
    if case == "single class":
        import shutil

        shutil.rmtree(root / "train" / "dog"), shutil.rmtree(root / "train" / "owl")
        return root, "only 1 class"
    if case == "truncated":
        p = root / "train" / "owl" / "3.png"
        p.write_bytes(p.read_bytes()[:60])
        (root / "train" / "cat" / "5.png").write_bytes(b"not an image")
        return root, "2 unreadable or truncated image(s)"
    if case == "mixed sizes":
        Image.fromarray(np.zeros((16, 10), np.uint8)).save(root / "train" / "cat" / "0.png")
        return root, "images of 2 sizes"
    if case == "bomb":
        Image.fromarray(np.zeros((200, 200), np.uint8)).save(root / "train" / "cat" / "0.png")
        return root, "decompression bomb"
    if case == "symlink out":
        outside = tmp_path / "outside.png"
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(outside)
        (root / "train" / "cat" / "link.png").symlink_to(outside)
        return root, "link leading out of"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty class", "single class", "truncated", "mixed sizes", "bomb", "symlink out"])
def test_bad_folder_refused_in_one_line_nothing_created(tmp_path, monkeypatch, case):
    root, what = _bad_folder(tmp_path, case)
    if case == "bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 200x200 is over twice the limit: the error
    pop = tmp_path / "pop"
    res = launch(pop, "--dataset", f"folder:{root}")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], res.output
    assert str(root) in lines[0]
    assert not pop.exists() and not (tmp_path / "cache").exists()


def test_truncated_images_listed_or_skipped(tmp_path):
    root, _ = _bad_folder(tmp_path, "truncated")
    with pytest.raises(DataError) as e:
        load_dataset("folder", root, validation_size=6, cache=False)
    assert "owl/3.png" in str(e.value) and "cat/5.png" in str(e.value) and "--skip-bad-images" in str(e.value)
    ds = load_dataset("folder", root, validation_size=6, cache=False, image={"skip_bad": True})
    assert len(ds.train_x) + len(ds.val_x) + len(ds.test_x) == 28


def _bad_npz(tmp_path: Path, case: str) -> tuple[Path, str]:
    path = tmp_path / "d.npz"
    y = np.arange(30) % 3
    x = np.zeros((30, 12, 12), np.uint8)
    if case == "labels out of range":
        np.savez(path, x_train=x, y_train=y, class_names=np.array(["a", "b"]))
        return path, "y_train ranges over 0..2, outside 0..1"
    if case == "negative labels":
        np.savez(path, x_train=x, y_train=y - 1)
        return path, "ranges over -1..1"
    if case == "nan":
        xf = x.astype(np.float32)
        xf[3, 4, 5] = np.nan
        np.savez(path, x_train=xf, y_train=y)
        return path, "NaN"
    if case == "single class":
        np.savez(path, x_train=x, y_train=np.zeros(30, np.int64))
        return path, "only 1 class"
    if case == "empty class":
        np.savez(path, x_train=x, y_train=np.where(y == 1, 2, y))
        return path, "class '1' has no training images"
    if case == "missing y":
        np.savez(path, x_train=x)
        return path, "lacks y_train"
    if case == "not npz":
        path.write_bytes(b"garbage")
        return path, "cannot read"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["labels out of range", "negative labels", "nan", "single class", "empty class",
                                  "missing y", "not npz"])
def test_bad_npz_refused_in_one_line_nothing_created(tmp_path, case):
    path, what = _bad_npz(tmp_path, case)
    pop = tmp_path / "pop"
    res = launch(pop, "--dataset", f"npz:{path}")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and what in lines[0] and str(path) in lines[0], res.output
    assert not pop.exists()


def test_bad_image_size_option(tmp_path):
    res = launch(tmp_path / "pop", "--dataset", f"folder:{make_folder(tmp_path / 'imgs')}", "--image-size", "12by")
    assert res.exit_code == 1 and "--image-size" in res.output and not (tmp_path / "pop").exists()
