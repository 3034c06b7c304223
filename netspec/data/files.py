"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read from their official files on disk.

The files sit where torchvision puts them (`ROOT/MNIST/raw/...`, `ROOT/cifar-10-batches-py/...`),
so a cache filled by torchvision, by us, or by hand all work. We read them with small numpy
readers rather than through torchvision's Dataset classes: one `frombuffer` per file instead of
per-sample Python, and a clear DataError naming the file when one is truncated or corrupt. When
files are missing we let torchvision download them (it knows the mirrors and checks the MD5
sums), then read what it wrote.
"""

from __future__ import annotations

import gzip
import pickle
import socket
import zlib
from pathlib import Path

import numpy as np

from netspec.data import DataError

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N)
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # torchvision's names
DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation: offline, the download fails fast instead of hanging

# name → (folder under root, files needed there, torchvision class that downloads them)
DATASETS = {
    "mnist": ("MNIST/raw", IDX_FILES, "MNIST"),
    "fashion_mnist": ("FashionMNIST/raw", IDX_FILES, "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py", CIFAR10_FILES, "CIFAR10"),
    "cifar100": ("cifar-100-python", CIFAR100_FILES, "CIFAR100"),
}
_CORRUPT = "the file is corrupt or of another format; delete it to download again"
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}

Arrays = tuple[np.ndarray, np.ndarray]


def load_files(name: str, root: Path) -> tuple[Arrays, Arrays, list[str]]:
    """((train images, labels), (test images, labels), class names); images uint8 N×C×H×W."""
    if name not in DATASETS:
        raise DataError(f"no file reader for dataset `{name}`", f"one of {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    folder = root / DATASETS[name][0]
    if missing_files(name, folder):
        download(name, root)
        still_missing = missing_files(name, folder)
        if still_missing:  # torchvision changed its layout, or the download was partial
            raise DataError(f"downloaded {name}, but {', '.join(still_missing)} are not in {folder}",
                            "put the files there by hand, or delete the folder to download again")
    if name in ("mnist", "fashion_mnist"):
        classes = [str(d) for d in range(10)] if name == "mnist" else list(FASHION_CLASSES)
        train = read_idx_pair(folder, "train", len(classes))
        test = read_idx_pair(folder, "t10k", len(classes))
        return train, test, classes
    if name == "cifar10":
        classes = _names(read_pickle(folder / "batches.meta"), b"label_names", folder / "batches.meta")
        batches = [read_cifar_batch(folder / f"data_batch_{i}", b"labels", len(classes)) for i in range(1, 6)]
        train = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
        return train, read_cifar_batch(folder / "test_batch", b"labels", len(classes)), classes
    classes = _names(read_pickle(folder / "meta"), b"fine_label_names", folder / "meta")
    train = read_cifar_batch(folder / "train", b"fine_labels", len(classes))
    return train, read_cifar_batch(folder / "test", b"fine_labels", len(classes)), classes


def missing_files(name: str, folder: Path) -> list[str]:
    """The dataset's files absent from `folder` (an IDX file counts as present as `.gz` too)."""
    _, files, _ = DATASETS[name]
    gz_ok = name in ("mnist", "fashion_mnist")
    return [f for f in files if not (folder / f).is_file() and not (gz_ok and (folder / f"{f}.gz").is_file())]


def download(name: str, root: Path) -> None:
    """Fetch the dataset with torchvision; offline, a DataError that says where to put the files."""
    subdir, files, _ = DATASETS[name]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fetch_with_torchvision(name, root)
    except Exception as exc:  # URLError/socket errors, torchvision's RuntimeError, a bad MD5, a broken archive
        listing = ", ".join(files) + (" (or .gz)" if name in ("mnist", "fashion_mnist") else "")
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        hint = f"or pass --data-root DIR that holds {subdir}/"
        if name in ARCHIVES:
            hint = f"or put {ARCHIVES[name]} into {root}, " + hint
        raise DataError(f"cannot download {name} (no network?): put {listing} into {root / subdir}",
                        f"{hint} (download failed: {reason})") from exc
    finally:
        socket.setdefaulttimeout(previous)


def fetch_with_torchvision(name: str, root: Path) -> None:
    """torchvision's own download (mirrors, MD5 check, extraction) into its usual layout under root."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, DATASETS[name][2])
    dataset_class(str(root), train=True, download=True)  # fetches train and test files alike


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------


def read_idx_pair(folder: Path, prefix: str, num_classes: int) -> Arrays:
    """`{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` as (N×1×H×W uint8, N int64)."""
    images_path = _plain_or_gz(folder / f"{prefix}-images-idx3-ubyte")
    labels_path = _plain_or_gz(folder / f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels",
                        "the files come from different downloads; delete them to download again")
    _check_labels(labels, num_classes, labels_path)
    return images[:, None], labels


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file: big-endian int32 magic (0, 0, type 0x08 = ubyte, ndim), ndim int32 dims, data."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {exc}", _CORRUPT) from exc
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        kind = "image" if magic == IDX_IMAGES_MAGIC else "label"
        raise DataError(f"{path} is not an IDX {kind} file (magic number {found}, expected {magic})", _CORRUPT)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its header", _CORRUPT)
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: {len(raw)} bytes, its header {list(dims)} needs {expected}",
                        _CORRUPT)
    # copy: frombuffer over bytes is read-only, and torch warns on non-writable arrays
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def _plain_or_gz(path: Path) -> Path:
    return path if path.is_file() else path.with_name(path.name + ".gz")


# --- CIFAR python pickles -------------------------------------------------------------------


def read_pickle(path: Path) -> dict:
    """One CIFAR pickle, in the official python format (dicts of bytes keys, from Python 2).

    Unpickling can run code, so this only ever reads the files at the fixed CIFAR paths: ones the
    user placed there or torchvision downloaded and checked against its MD5 sums.
    """
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="bytes")
    except Exception as exc:  # UnpicklingError, EOFError, OSError, ValueError, ...: all mean unreadable
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}", _CORRUPT) from exc
    if not isinstance(content, dict):
        raise DataError(f"{path} is not a CIFAR batch (a {type(content).__name__}, not a dict)", _CORRUPT)
    return content


def read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> Arrays:
    """A batch's b"data" (N×3072: 1024 red, 1024 green, 1024 blue, row-major) as N×3×32×32."""
    batch = read_pickle(path)
    absent = [repr(key) for key in (b"data", label_key) if key not in batch]
    if absent:
        raise DataError(f"{path} is not a CIFAR batch: it lacks {' and '.join(absent)}", _CORRUPT)
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: expected N×3072 uint8 data and N labels, found {data.dtype} "
                        f"{list(data.shape)} and {len(labels)} labels", _CORRUPT)
    _check_labels(labels, num_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _names(meta: dict, key: bytes, path: Path) -> list[str]:
    if key not in meta:
        raise DataError(f"{path} lacks {key!r}", _CORRUPT)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path} has labels outside 0..{num_classes - 1} "
                        f"(found {labels.min()}..{labels.max()})", _CORRUPT)

