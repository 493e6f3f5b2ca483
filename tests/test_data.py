"""Data sets from the standard files (generated here in exactly those formats), the validation
split, the clear errors for missing/truncated/hostile files, and batch augmentation."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from lse.nn.data import SYSTEM_FASHION_MNIST, augment_batch, load_dataset, read_cifar_pickle
from lse.errors import DataError
from lse.nn.synthetic import CIFAR10_DIR, CIFAR100_DIR, IDX_FILES, write_synthetic

FORMATS = [  # (data set name, synthetic format, input shape, classes, flip)
    ("fashion-mnist", "idx", (1, 28, 28), 10, True),
    ("mnist", "idx", (1, 28, 28), 10, False),
    ("cifar10", "cifar10", (3, 32, 32), 10, True),
    ("cifar100", "cifar100", (3, 32, 32), 100, True),
]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("LSE_DATA", raising=False)


@pytest.mark.parametrize("name,fmt,shape,classes,flip", FORMATS)
def test_standard_format_loads_with_shapes_labels_and_split(tmp_path, name, fmt, shape, classes, flip):
    write_synthetic(tmp_path, fmt, n_train=600, n_test=150, seed=1)
    ds = load_dataset(name, tmp_path, validation_size=100, seed=3, cache=False)
    assert ds.input_shape == shape and ds.num_classes == classes and ds.flip is flip
    assert ds.train_x.shape == (500, *shape) and ds.val_x.shape == (100, *shape) and ds.test_x.shape == (150, *shape)
    for x in (ds.train_x, ds.val_x, ds.test_x):
        assert x.dtype == torch.uint8 and x.is_contiguous()
    for y in (ds.train_y, ds.val_y, ds.test_y):
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < classes
    assert (ds.split.train_size, ds.split.validation_size, ds.split.test_size) == (500, 100, 150)
    assert len(ds.mean) == len(ds.std) == shape[0]
    assert ds.record()["split"]["val_indices_sha256"] == ds.split.val_indices_sha256


def test_subfolder_and_env_var_are_searched(tmp_path, monkeypatch):
    write_synthetic(tmp_path / "fashion-mnist", "idx", n_train=100, n_test=20)
    write_synthetic(tmp_path, "cifar10", n_train=100, n_test=20)
    monkeypatch.setenv("LSE_DATA", str(tmp_path))
    assert load_dataset("fashion-mnist", validation_size=10, cache=False).source == str(tmp_path / "fashion-mnist")
    assert load_dataset("cifar10", validation_size=10, cache=False).source == str(tmp_path / CIFAR10_DIR)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in x.reshape(x.shape[0], -1).numpy()}


def test_split_is_disjoint_covers_training_file_and_is_fixed_by_seed(tmp_path):
    write_synthetic(tmp_path, "cifar10", n_train=400, n_test=50, seed=0, noise=1.0)  # all rows distinct
    a = load_dataset("cifar10", tmp_path, validation_size=80, seed=7, cache=False)
    b = load_dataset("cifar10", tmp_path, validation_size=80, seed=7, cache=False)
    c = load_dataset("cifar10", tmp_path, validation_size=80, seed=8, cache=False)
    assert not (_rows(a.train_x) & _rows(a.val_x))
    assert len(_rows(a.train_x) | _rows(a.val_x)) == 400
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.val_y, b.val_y)
    assert a.split.val_indices_sha256 == b.split.val_indices_sha256 != c.split.val_indices_sha256
    assert not torch.equal(a.val_x, c.val_x)
    assert not (_rows(a.test_x) & (_rows(a.train_x) | _rows(a.val_x)))  # test set stays apart


def test_load_is_cached_per_process(tmp_path):
    write_synthetic(tmp_path, "idx", n_train=100, n_test=20)
    assert load_dataset("mnist", tmp_path, validation_size=10) is load_dataset("mnist", tmp_path, validation_size=10)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "cifar100"])
def test_missing_data_names_folder_files_and_remedy(tmp_path, name):
    with pytest.raises(DataError) as e:
        load_dataset(name, tmp_path / "empty", cache=False)
    msg = str(e.value)
    assert str(tmp_path / "empty") in msg and f"lse data fetch {name}" in msg
    assert ("train-images-idx3-ubyte.gz" in msg) if "mnist" in name else ("test" in msg)
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in msg


def test_unknown_name_lists_valid_ones(tmp_path):
    with pytest.raises(DataError, match="cifar10"):
        load_dataset("imagenet", tmp_path)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_synthetic(tmp_path, "idx", n_train=100, n_test=20)
    path = tmp_path / IDX_FILES["train_images"]
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])  # valid gzip, short content
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", tmp_path, validation_size=10, cache=False)
    path.write_bytes(gzip.compress(raw)[:200])  # the gzip stream itself cut short
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", tmp_path, validation_size=10, cache=False)


def test_missing_one_idx_file(tmp_path):
    write_synthetic(tmp_path, "idx", n_train=100, n_test=20)
    (tmp_path / IDX_FILES["test_labels"]).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", tmp_path, validation_size=10, cache=False)


def test_truncated_cifar_pickle_is_a_clear_error(tmp_path):
    write_synthetic(tmp_path, "cifar10", n_train=100, n_test=20)
    p = tmp_path / CIFAR10_DIR / "data_batch_3"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3.*truncated"):
        load_dataset("cifar10", tmp_path, validation_size=10, cache=False)


def test_missing_cifar_batch(tmp_path):
    write_synthetic(tmp_path, "cifar100", n_train=100, n_test=20)
    (tmp_path / CIFAR100_DIR / "test").unlink()
    with pytest.raises(DataError, match="lacks test"):
        load_dataset("cifar100", tmp_path, validation_size=10, cache=False)


def test_labels_out_of_range_are_refused(tmp_path):
    write_synthetic(tmp_path, "cifar10", n_train=100, n_test=20)
    p = tmp_path / CIFAR10_DIR / "test_batch"
    d = pickle.loads(p.read_bytes(), encoding="bytes")
    d[b"labels"][0] = 10
    p.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DataError, match="labels range over 0..10"):
        load_dataset("cifar10", tmp_path, validation_size=10, cache=False)


def test_validation_size_too_large_is_an_error(tmp_path):
    write_synthetic(tmp_path, "idx", n_train=100, n_test=20)
    with pytest.raises(DataError, match="between 1 and 99"):
        load_dataset("mnist", tmp_path, validation_size=100, cache=False)


class _Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {_Hostile.marker}",))


def test_hostile_pickle_is_refused_and_its_code_not_run(tmp_path):
    write_synthetic(tmp_path, "cifar10", n_train=100, n_test=20)
    marker = tmp_path / "pwned"
    _Hostile.marker = str(marker)
    p = tmp_path / CIFAR10_DIR / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": _Hostile(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="posix.system|os.system|not allowed"):
        load_dataset("cifar10", tmp_path, validation_size=10, cache=False)
    assert not marker.exists()


def test_restricted_unpickler_reads_python3_protocol_too(tmp_path):
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=4))
    d = read_cifar_pickle(p)
    assert d["data"].shape == (2, 3072) and d["labels"] == [0, 1]


# --- augmentation ----------------------------------------------------------------------------


def _offsets(orig: torch.Tensor, out: torch.Tensor, pad: int = 4) -> list[tuple[int, int, bool]]:
    """For each image, every (dy, dx, flipped) under which `out` is a crop of padded `orig`."""
    padded = torch.nn.functional.pad(orig, (pad,) * 4)
    h, w = orig.shape[-2:]
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[..., dy : dy + h, dx : dx + w]
            if torch.equal(crop, out):
                found.append((dy, dx, False))
            if torch.equal(crop.flip(-1), out):
                found.append((dy, dx, True))
    return found


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_crops_within_padding_and_flips_only_when_enabled(flip):
    g = torch.Generator().manual_seed(0)
    # distinct nonzero pixel values so each crop offset is identifiable
    x = (torch.arange(64 * 3 * 8 * 8) % 251 + 1).to(torch.uint8).reshape(64, 3, 8, 8)
    out = augment_batch(x, g, flip=flip)
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets, flips = set(), 0
    for i in range(x.shape[0]):
        found = _offsets(x[i], out[i])
        assert found, f"image {i} is not a crop of its padded original"
        dy, dx, f = found[0]
        offsets.add((dy, dx))
        flips += f
    assert len(offsets) > 10  # crops vary
    if flip:
        assert 10 < flips < 54
    else:
        assert flips == 0


def test_augmentation_is_deterministic_by_generator():
    x = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    a = augment_batch(x, torch.Generator().manual_seed(5), flip=True)
    b = augment_batch(x, torch.Generator().manual_seed(5), flip=True)
    assert torch.equal(a, b)


@pytest.mark.skipif(not SYSTEM_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package():
    ds = load_dataset("fashion-mnist", SYSTEM_FASHION_MNIST)
    assert ds.train_x.shape == (55000, 1, 28, 28) and ds.val_x.shape == (5000, 1, 28, 28)
    assert ds.test_x.shape == (10000, 1, 28, 28)
    assert sorted(ds.train_y.unique().tolist()) == list(range(10))


# --- lse data fetch (no internet needed: file:// URLs and a refused download) ---------------


def test_fetch_verifies_md5_and_unpacks_cifar(tmp_path, monkeypatch):
    import hashlib
    import tarfile

    import lse.nn.data as data

    src = write_synthetic(tmp_path / "src", "cifar10", n_train=100, n_test=20)
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src / CIFAR10_DIR, arcname=CIFAR10_DIR)
    md5 = hashlib.md5(tgz.read_bytes()).hexdigest()
    spec = data.SPECS["cifar10"]
    monkeypatch.setitem(data.SPECS, "cifar10", spec.__class__(**{**spec.__dict__, "urls": ((tgz.as_uri(), md5),)}))
    dest = data.fetch_dataset("cifar10", tmp_path / "dest")
    assert load_dataset("cifar10", dest, validation_size=10, cache=False).train_x.shape[0] == 90
    monkeypatch.setitem(data.SPECS, "cifar10", spec.__class__(**{**spec.__dict__, "urls": ((tgz.as_uri(), "0" * 32),)}))
    with pytest.raises(DataError, match="MD5"):
        data.fetch_dataset("cifar10", tmp_path / "dest2")
    assert not list((tmp_path / "dest2").glob("*.tar.gz*"))  # nothing half-written is left


@pytest.mark.parametrize("with_filter", [True, False])
def test_fetched_archive_with_a_path_outside_is_refused(tmp_path, monkeypatch, with_filter):
    # Debian 12's Python 3.11.2 has no tarfile extraction filters (PEP 706 came in 3.11.4):
    # extractall(filter=...) raised TypeError there; the check must hold with and without them
    import hashlib
    import io
    import tarfile

    import lse.nn.data as data

    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    spec = data.SPECS["cifar10"]
    md5 = hashlib.md5(tgz.read_bytes()).hexdigest()
    monkeypatch.setitem(data.SPECS, "cifar10", spec.__class__(**{**spec.__dict__, "urls": ((tgz.as_uri(), md5),)}))
    (tmp_path / "dest").mkdir()
    with pytest.raises((DataError, tarfile.TarError)):
        data.fetch_dataset("cifar10", tmp_path / "dest" / "inner")
    assert not (tmp_path / "dest" / "escaped.txt").exists()


def test_fetch_without_internet_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import lse.nn.data as data

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="no internet"):
        data.fetch_dataset("mnist", tmp_path)


def test_flip_default_per_data_set_and_override(tmp_path):
    write_synthetic(tmp_path, "idx", n_train=100, n_test=20)
    assert load_dataset("mnist", tmp_path, validation_size=10, cache=False).flip is False
    assert load_dataset("mnist", tmp_path, validation_size=10, cache=False, flip=True).flip is True
