"""Dataset loading from the real on-disk formats, written here in miniature.

Every file is generated in tmp_path exactly as its format defines it (IDX headers, CIFAR's
python pickles, PNG folders), so the readers are checked against the formats and not against
themselves. Nothing touches the network: torchvision's download is replaced by a stub.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import socket
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from netspec.data import DataError, Split, load_data
from netspec.data import files as files_module
from netspec.data.files import FASHION_CLASSES, load_files, read_idx
from netspec.data.folder import FolderDataset, load_folder

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any download attempt fails at once, as it does without network; records the calls."""
    calls = []

    def fetch(name, root):
        calls.append((name, Path(root), socket.getdefaulttimeout()))
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(files_module, "fetch_with_torchvision", fetch)
    return calls


# --- writers for the formats ----------------------------------------------------------------


def pattern(n: int, *shape: int, offset: int = 0) -> np.ndarray:
    """n distinct uint8 images: pixel value depends on image index and position."""
    grid = np.indices((n, *shape)).astype(np.int64)
    weights = np.array([7, 3, 5, 1][: 1 + len(shape)]).reshape(-1, *([1] * (1 + len(shape))))
    return ((grid * weights).sum(0) + offset).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """IDX: two zero bytes, type 0x08 (unsigned byte), ndim, big-endian int32 dims, then the data."""
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_mnist(root: Path, folder: str = "MNIST", gz: bool = False, train: int = 50, test: int = 20):
    raw = root / folder / "raw"
    images = {"train": pattern(train, 28, 28), "t10k": pattern(test, 28, 28, offset=100)}
    labels = {"train": np.arange(train) % 10, "t10k": (np.arange(test) * 3) % 10}
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[prefix], gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[prefix], gz)
    return images, labels


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """N×3×32×32 → the official N×3072 rows: the red plane row-major, then green, then blue."""
    return images.reshape(len(images), 3072)


def dump(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6):
    folder = root / "cifar-10-batches-py"
    train = pattern(5 * per_batch, 3, 32, 32)
    train_labels = (np.arange(5 * per_batch) * 7) % 10
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        dump(folder / f"data_batch_{b + 1}", {b"batch_label": b"training batch", b"data": cifar_rows(train[part]),
                                              b"labels": train_labels[part].tolist()})
    test_images = pattern(test, 3, 32, 32, offset=50)
    test_labels = np.arange(test) % 10
    dump(folder / "test_batch", {b"data": cifar_rows(test_images), b"labels": test_labels.tolist()})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return (train, train_labels), (test_images, test_labels), [n.decode() for n in names]


def write_cifar100(root: Path, train: int = 12, test: int = 5):
    folder = root / "cifar-100-python"
    images, labels = pattern(train, 3, 32, 32), (np.arange(train) * 37) % 100
    dump(folder / "train", {b"data": cifar_rows(images), b"fine_labels": labels.tolist(),
                            b"coarse_labels": (labels // 5).tolist()})
    test_images, test_labels = pattern(test, 3, 32, 32, offset=9), np.arange(test) + 95
    dump(folder / "test", {b"data": cifar_rows(test_images), b"fine_labels": test_labels.tolist(),
                           b"coarse_labels": (test_labels // 5).tolist()})
    names = [f"class{i:02d}".encode() for i in range(100)]
    dump(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    return (images, labels), (test_images, test_labels), [n.decode() for n in names]


def write_png(path: Path, array: np.ndarray) -> None:
    """array: H×W×3 or H×W uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def rgb(value: int, h: int = 8, w: int = 8) -> np.ndarray:
    """A distinct H×W×3 image per value."""
    return pattern(1, h, w, 3, offset=value)[0]


# --- MNIST / Fashion-MNIST ------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_idx_round_trip(tmp_path, gz):
    images, labels = write_mnist(tmp_path, gz=gz)
    (train_x, train_y), (test_x, test_y), classes = load_files("mnist", tmp_path)
    assert train_x.dtype == np.uint8 and train_x.shape == (50, 1, 28, 28)
    np.testing.assert_array_equal(train_x[:, 0], images["train"])
    np.testing.assert_array_equal(test_x[:, 0], images["t10k"])
    assert train_y.dtype == np.int64 and test_y.dtype == np.int64
    np.testing.assert_array_equal(train_y, labels["train"])
    np.testing.assert_array_equal(test_y, labels["t10k"])
    assert classes == [str(d) for d in range(10)]


def test_mnist_through_load_data(tmp_path, offline):
    images, labels = write_mnist(tmp_path)
    data = load_data("mnist", (1, 28, 28), root=tmp_path)
    assert isinstance(data.train, Split) and data.notes == []
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(images["train"]))
    assert torch.equal(data.val.labels, torch.from_numpy(labels["t10k"]).long())
    expected = images["train"].astype(np.float64) / 255
    assert data.mean == pytest.approx((expected.mean(),), abs=1e-5)
    assert offline == []  # files present: no download attempt


def test_mnist_adapted_to_rgb_32(tmp_path):
    write_mnist(tmp_path)
    data = load_data("mnist", (3, 32, 32), root=tmp_path)
    assert data.train.images.shape == (50, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.val.images.shape == (20, 3, 32, 32)
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])  # grey replicated
    assert any("replicated" in n for n in data.notes) and any("28×28 → 32×32" in n for n in data.notes)


def test_fashion_mnist(tmp_path):
    images, labels = write_mnist(tmp_path, folder="FashionMNIST", gz=True, train=30, test=10)
    data = load_data("fashion_mnist", (1, 28, 28), root=tmp_path)
    assert data.classes == FASHION_CLASSES and data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert torch.equal(data.val.images[:, 0], torch.from_numpy(images["t10k"]))
    assert torch.equal(data.train.labels, torch.from_numpy(labels["train"]).long())


def test_idx_matches_torchvision_reader(tmp_path):
    """Our reader and torchvision's agree on the same files, in torchvision's own layout."""
    torchvision = pytest.importorskip("torchvision")
    write_mnist(tmp_path)
    reference = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False)
    (train_x, train_y), _, _ = load_files("mnist", tmp_path)
    np.testing.assert_array_equal(train_x[:, 0], reference.data.numpy())
    np.testing.assert_array_equal(train_y, reference.targets.numpy())


def test_missing_files_offline_names_files_and_folder(tmp_path, offline):
    with pytest.raises(DataError) as error:
        load_data("mnist", (1, 28, 28), root=tmp_path)
    message = str(error.value)
    first_line = message.splitlines()[0]
    assert "cannot download mnist" in first_line
    for name in IDX_NAMES:
        assert name in first_line
    assert str(tmp_path / "MNIST" / "raw") in first_line
    assert "--data-root" in message and "Name or service not known" in message
    # the download ran with a short socket timeout, and the old default came back
    assert offline == [("mnist", tmp_path, files_module.DOWNLOAD_TIMEOUT_S)]
    assert socket.getdefaulttimeout() is None


def test_cifar_missing_offline_mentions_archive(tmp_path):
    with pytest.raises(DataError) as error:
        load_files("cifar100", tmp_path)
    first, hint = str(error.value).splitlines()
    assert "train, test, meta" in first and str(tmp_path / "cifar-100-python") in first
    assert "cifar-100-python.tar.gz" in hint


def test_download_fills_the_folder(tmp_path, monkeypatch):
    """After torchvision's download writes the files, our readers take over."""
    def fetch(name, root):
        assert name == "fashion_mnist"
        write_mnist(Path(root), folder="FashionMNIST", train=10, test=10)

    monkeypatch.setattr(files_module, "fetch_with_torchvision", fetch)
    (train_x, _), (test_x, _), classes = load_files("fashion_mnist", tmp_path)
    assert train_x.shape == (10, 1, 28, 28) and test_x.shape == (10, 1, 28, 28) and len(classes) == 10


def test_corrupt_idx_magic(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2:4] = b"\x08\x01"  # claims to be a label file
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is not an IDX image file \(magic number 2049"):
        load_data("mnist", (1, 28, 28), root=tmp_path)


def test_truncated_and_broken_idx(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is truncated"):
        load_files("mnist", tmp_path)
    path.unlink()
    path.with_name(path.name + ".gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"cannot read .*t10k-images-idx3-ubyte\.gz"):
        load_files("mnist", tmp_path)


def test_idx_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(49, np.uint8))
    with pytest.raises(DataError, match="50 images but .* 49 labels"):
        load_files("mnist", tmp_path)


def test_read_idx_any_shape(tmp_path):
    array = pattern(3, 4, 5)
    write_idx(tmp_path / "x", array)
    out = read_idx(tmp_path / "x", 2051)
    assert out.flags.writeable
    np.testing.assert_array_equal(out, array)


# --- CIFAR ----------------------------------------------------------------------------------


def test_cifar10_round_trip(tmp_path):
    (train, train_labels), (test, test_labels), names = write_cifar10(tmp_path)
    (train_x, train_y), (test_x, test_y), classes = load_files("cifar10", tmp_path)
    assert train_x.shape == (20, 3, 32, 32) and train_x.dtype == np.uint8
    np.testing.assert_array_equal(train_x, train)  # batches concatenated in order 1..5
    np.testing.assert_array_equal(test_x, test)
    np.testing.assert_array_equal(train_y, train_labels)
    np.testing.assert_array_equal(test_y, test_labels)
    assert classes == names and train_y.dtype == np.int64


def test_cifar10_channel_planes(tmp_path):
    """Row layout: 1024 red values, then 1024 green, then 1024 blue, each plane row-major."""
    folder = tmp_path / "cifar-10-batches-py"
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]).astype(np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        dump(folder / name, {b"data": row[None], b"labels": [3]})
    dump(folder / "batches.meta", {b"label_names": [str(i).encode() for i in range(10)]})
    (train_x, _), _, _ = load_files("cifar10", tmp_path)
    assert (train_x[:, 0] == 10).all() and (train_x[:, 1] == 20).all()
    assert train_x[0, 2, 0, 5] == 5 and train_x[0, 2, 1, 0] == 32  # blue plane, row 1 starts at 32


def test_cifar10_to_grayscale_spec(tmp_path):
    write_cifar10(tmp_path)
    data = load_data("cifar10", (1, 16, 16), root=tmp_path)
    assert data.train.images.shape == (20, 1, 16, 16) and len(data.mean) == 1
    assert any("grayscale" in n for n in data.notes)


def test_cifar100_fine_labels(tmp_path):
    (train, labels), (_, test_labels), names = write_cifar100(tmp_path)
    data = load_data("cifar100", (3, 32, 32), root=tmp_path)
    assert data.classes == names and len(data.classes) == 100
    assert torch.equal(data.train.images, torch.from_numpy(train))
    assert torch.equal(data.train.labels, torch.from_numpy(labels).long())
    assert torch.equal(data.val.labels, torch.from_numpy(test_labels).long())
    assert data.notes == []


def test_corrupt_cifar_pickle(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"cannot read .*data_batch_3"):
        load_files("cifar10", tmp_path)
    dump(path, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"data_batch_3: expected N×3072"):
        load_files("cifar10", tmp_path)
    dump(path, {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})
    with pytest.raises(DataError, match=r"data_batch_3 has labels outside 0\.\.9"):
        load_files("cifar10", tmp_path)


# --- names and channels ---------------------------------------------------------------------


def test_unknown_dataset_did_you_mean(tmp_path):
    with pytest.raises(DataError) as error:
        load_data("mnsit", (1, 28, 28), root=tmp_path)
    assert "unknown dataset `mnsit`" in str(error.value) and "did you mean `mnist`?" in str(error.value)


def test_four_channel_spec_is_rejected(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(DataError, match="1-channel images; the spec's input has 4 channels"):
        load_data("mnist", (4, 28, 28), root=tmp_path)
    make_flat_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match="the spec's input has 4 channels"):
        load_data(f"folder:{tmp_path / 'imgs'}", (4, 8, 8))


# --- image folders --------------------------------------------------------------------------


def make_flat_folder(root: Path, counts=(("cat", 6), ("dog", 10), ("emu", 1))) -> dict[str, np.ndarray]:
    written = {}
    value = 0
    for name, count in counts:
        for i in range(count):
            array = rgb(value)
            write_png(root / name / f"img{i:02d}.png", array)
            written[f"{name}/img{i:02d}.png"] = array
            value += 17
    return written


def relative(dataset: FolderDataset, root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in dataset.files]


def test_folder_flat_split(tmp_path):
    root = tmp_path / "imgs"
    written = make_flat_folder(root)
    data = load_data(f"folder:{root}", (3, 8, 8))
    assert data.name == f"folder:{root}" and not isinstance(data.train, Split) and data.classes == ["cat", "dog", "emu"]
    val = relative(data.val, root)
    # 20 % per class (1 of 6 cats, 2 of 10 dogs), the lone emu stays in training
    assert sorted(v.split("/")[0] for v in val) == ["cat", "dog", "dog"]
    assert len(data.train) + len(data.val) == len(written)
    assert not set(val) & set(relative(data.train, root))
    # the held-out files are those whose relative path hashes lowest in their class
    dogs = sorted((k for k in written if k.startswith("dog/")), key=lambda k: hashlib.sha1(k.encode()).hexdigest())
    assert sorted(v for v in val if v.startswith("dog/")) == sorted(dogs[:2])
    assert any("held out" in n for n in data.notes)
    # pixels and labels round-trip exactly at the native size
    for dataset in (data.train, data.val):
        for i in range(len(dataset)):
            image, label = dataset[i]
            name = relative(dataset, root)[i]
            assert image.dtype == torch.uint8 and image.shape == (3, 8, 8)
            assert label.dtype == torch.int64 and data.classes[int(label)] == name.split("/")[0]
            assert torch.equal(image, torch.from_numpy(written[name]).permute(2, 0, 1))


def test_folder_split_is_deterministic(tmp_path):
    """Same relative paths → same split, whatever the creation order or folder location."""
    first, second = tmp_path / "a", tmp_path / "elsewhere" / "b"
    make_flat_folder(first)
    make_flat_folder(second, counts=(("emu", 1), ("dog", 10), ("cat", 6)))  # written in another order
    one = load_folder(first, (3, 8, 8))
    two = load_folder(second, (3, 8, 8))
    assert relative(one.val, first) == relative(two.val, second)
    assert relative(one.train, first) == relative(two.train, second)
    assert one.classes == two.classes and one.val.labels == two.val.labels


def test_folder_train_val_layout_and_adaptation(tmp_path):
    root = tmp_path / "ds"
    for split_name, count in (("train", 3), ("test", 2)):
        for name in ("b_class", "a_class"):
            for i in range(count):
                write_png(root / split_name / name / f"{i}.png", rgb(i * 40 + len(name), h=12, w=20))
    Image.fromarray(rgb(5, h=12, w=20)).save(root / "train" / "a_class" / "photo.JPEG")  # suffix case ignored
    data = load_data(f"folder:{root}", (1, 6, 10))
    assert data.classes == ["a_class", "b_class"] and len(data.train) == 7 and len(data.val) == 4
    assert data.notes == []
    image, label = data.val[0]
    assert image.shape == (1, 6, 10) and image.dtype == torch.uint8 and int(label) == 0
    # decoded like Pillow's own grayscale conversion and bilinear resize
    with Image.open(data.val.files[0]) as im:
        expected = np.array(im.convert("L").resize((10, 6), Image.Resampling.BILINEAR))
    assert torch.equal(image[0], torch.from_numpy(expected))
    loader = torch.utils.data.DataLoader(data.train, batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 1, 6, 10) and labels.dtype == torch.int64
    assert pickle.loads(pickle.dumps(data.train)).files == data.train.files  # DataLoader workers pickle it


def test_folder_mean_std(tmp_path):
    root = tmp_path / "imgs"
    written = make_flat_folder(root)
    data = load_folder(root, (3, 8, 8))
    stacked = np.stack([written[name] for name in relative(data.train, root)]) / 255.0
    assert data.mean == pytest.approx(tuple(stacked.mean(axis=(0, 1, 2))), abs=1e-9)
    assert data.std == pytest.approx(tuple(stacked.std(axis=(0, 1, 2))), abs=1e-9)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no image folder at"):
        load_folder(tmp_path / "nope", (3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class subfolders"):
        load_folder(tmp_path / "empty", (3, 8, 8))
    make_flat_folder(tmp_path / "gap")
    (tmp_path / "gap" / "fox").mkdir()
    (tmp_path / "gap" / "fox" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"class folder .*fox has no images"):
        load_folder(tmp_path / "gap", (3, 8, 8))


def test_folder_mismatched_classes(tmp_path):
    root = tmp_path / "ds"
    write_png(root / "train" / "cat" / "0.png", rgb(1))
    write_png(root / "train" / "dog" / "0.png", rgb(2))
    write_png(root / "val" / "cat" / "0.png", rgb(3))
    write_png(root / "val" / "owl" / "0.png", rgb(4))
    with pytest.raises(DataError, match="different class folders .*also has owl.*lacks dog"):
        load_folder(root, (3, 8, 8))


def test_folder_unreadable_image_named(tmp_path):
    root = tmp_path / "imgs"
    make_flat_folder(root)
    bad = root / "dog" / "img03.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"cannot read image .*dog/img03\.png"):
        load_folder(root, (3, 8, 8))
    # a file that passes the header check but fails to decode is named when read
    make_flat_folder(tmp_path / "again")
    good = load_folder(tmp_path / "again", (3, 8, 8))
    victim = good.train.files[0]
    write_png(victim, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    victim.write_bytes(victim.read_bytes()[:4000])  # header intact, pixel data cut short
    with pytest.raises(DataError, match=rf"cannot read image .*{victim.name}"):
        good.train[0]


def test_folder_train_only_is_split_and_val_only_is_an_error(tmp_path):
    make_flat_folder(tmp_path / "ds" / "train")
    data = load_folder(tmp_path / "ds", (3, 8, 8))
    assert data.classes == ["cat", "dog", "emu"] and len(data.val) == 3 and len(data.train) == 14
    make_flat_folder(tmp_path / "odd" / "val")
    with pytest.raises(DataError, match="has val/ but no train/"):
        load_folder(tmp_path / "odd", (3, 8, 8))
