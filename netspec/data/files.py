"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read from their official files on disk.

The files sit where torchvision puts them (`ROOT/MNIST/raw/...`, `ROOT/cifar-10-batches-py/...`),
so a cache filled by torchvision, by us, or by hand all work. We read them with small numpy
readers rather than through torchvision's Dataset classes: one `frombuffer` per file instead of
per-sample Python, and a clear DataError naming the file when one is truncated or corrupt. When
files are missing we let torchvision download them (it knows the mirrors and checks the MD5
sums), then read what it wrote.

Data files are data: a dataset folder may come from someone else (or a run's config.json may
point `data_root` at one), so nothing read here can run code or make us allocate more than the
file itself holds. IDX headers are checked against the file's real size before any allocation,
gzip members are decompressed only as far as the header says, and CIFAR's pickles go through
the restricted unpickler of `netspec.data.pickles`, which builds nothing but builtin values and
inert stand-ins for numpy's array reconstructors (arrays once their dtype and size check out).
"""

from __future__ import annotations

import gzip
import math
import os
import socket
import struct
import zlib
from pathlib import Path

import numpy as np

from netspec.data import DataError, open_regular_file, printable, read_into, read_regular_file
from netspec.data.pickles import PickleRefused, array_of, integers_of, kind_of, load_pickle, texts_of

# The largest official file is CIFAR-100's `train` (155 MB; MNIST's train images are 47 MB).
# 512 MiB leaves a 3× margin and is the most one file (or one header's claim) makes us read.
MAX_DATA_FILE_BYTES = 512 * 1024 * 1024
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N)
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
CIFAR_ROW = 3 * 32 * 32  # one image: 1024 red, 1024 green, 1024 blue values
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # torchvision's names
DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation: offline, the download fails fast instead of hanging
# Label names end up in tables, reports and model metadata; the official ones are ≤ 20 characters.
MAX_CLASS_NAME_CHARS = 100

# name → (folder under root, files needed there, torchvision class that downloads them)
DATASETS = {
    "mnist": ("MNIST/raw", IDX_FILES, "MNIST"),
    "fashion_mnist": ("FashionMNIST/raw", IDX_FILES, "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py", CIFAR10_FILES, "CIFAR10"),
    "cifar100": ("cifar-100-python", CIFAR100_FILES, "CIFAR100"),
}
_CORRUPT = "the file is corrupt or of another format; delete it to download again"
_NOT_CIFAR = "CIFAR files hold only arrays, lists, numbers and bytes; delete it to download the real one"
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
            raise DataError(f"downloaded {name}, but {', '.join(still_missing)} are not in {printable(folder, None)}",
                            "put the files there by hand, or delete the folder to download again")
    if name in ("mnist", "fashion_mnist"):
        classes = [str(d) for d in range(10)] if name == "mnist" else list(FASHION_CLASSES)
        train = read_idx_pair(folder, "train", len(classes))
        test = read_idx_pair(folder, "t10k", len(classes))
        return train, test, classes
    if name == "cifar10":
        classes = _names(folder / "batches.meta", b"label_names", 10)
        batches = [read_cifar_batch(folder / f"data_batch_{i}", b"labels", len(classes)) for i in range(1, 6)]
        train = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
        return (_nonempty(train, folder / "data_batch_1"), read_cifar_batch(folder / "test_batch", b"labels", 10),
                classes)
    classes = _names(folder / "meta", b"fine_label_names", 100)
    train = read_cifar_batch(folder / "train", b"fine_labels", len(classes))
    return _nonempty(train, folder / "train"), read_cifar_batch(folder / "test", b"fine_labels", 100), classes


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
            hint = f"or put {ARCHIVES[name]} into {printable(root, None)}, " + hint
        raise DataError(f"cannot download {name} (no network?): put {listing} into {printable(root / subdir, None)}",
                        f"{hint} (download failed: {printable(reason)})") from exc
    finally:
        socket.setdefaulttimeout(previous)


def fetch_with_torchvision(name: str, root: Path) -> None:
    """torchvision's own download (mirrors, MD5 check, extraction) into its usual layout under root.

    Constructing the Dataset with download=True is what keeps the checks: the archive (CIFAR)
    or each .gz (MNIST) is verified against torchvision's pinned MD5 before it is extracted,
    an archive the user placed in root is used only if its MD5 matches, and CIFAR's extracted
    batches are verified again (`_check_integrity`) before torchvision itself unpickles them.
    We then read the files with our own readers, which treat them as untrusted all the same."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, DATASETS[name][2])
    dataset_class(str(root), train=True, download=True)  # fetches train and test files alike


def _nonempty(arrays: Arrays, path: Path) -> Arrays:
    if len(arrays[1]) == 0:
        raise DataError(f"{printable(path, None)} holds no images", _CORRUPT)
    return arrays


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------


def read_idx_pair(folder: Path, prefix: str, num_classes: int) -> Arrays:
    """`{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` as (N×1×H×W uint8, N int64)."""
    images_path = _plain_or_gz(folder / f"{prefix}-images-idx3-ubyte")
    labels_path = _plain_or_gz(folder / f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    if images.size == 0:  # no image, or 0×0 images: nothing to train or validate on
        raise DataError(f"{printable(images_path, None)} holds no images (its header says {list(images.shape)})",
                        _CORRUPT)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{printable(images_path, None)} has {len(images)} images but "
                        f"{printable(labels_path, None)} has {len(labels)} labels",
                        "the files come from different downloads; delete them to download again")
    _check_labels(labels, num_classes, labels_path)
    return images[:, None], labels


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file: big-endian int32 magic (0, 0, type 0x08 = ubyte, ndim), ndim int32 dims, data.

    The header is read first and the data only as far as it says (plus one byte, to notice a
    longer file): a header claiming 2^32 × 2^32 images is refused before anything is allocated,
    and a gzip member that inflates beyond the header's size is never inflated further."""
    try:
        with open_regular_file(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_DATA_FILE_BYTES:
                raise DataError(f"{printable(path, None)} is {size:,} bytes, more than the "
                                f"{MAX_DATA_FILE_BYTES:,} netspec reads from one dataset file", _CORRUPT)
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=f) as stream:
                    return _read_idx_stream(stream, path, magic, None)
            return _read_idx_stream(f, path, magic, size)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {printable(path, None)}: {printable(exc)}", _CORRUPT) from exc


def _read_idx_stream(stream, path: Path, magic: int, size: int | None) -> np.ndarray:
    """Header, then exactly the data it announces. `size`: the plain file's size (None for gzip)."""
    shown = printable(path, None)
    head = stream.read(4)
    found = int.from_bytes(head, "big") if len(head) == 4 else None
    if found != magic:
        kind = "image" if magic == IDX_IMAGES_MAGIC else "label"
        raise DataError(f"{shown} is not an IDX {kind} file (magic number {found}, expected {magic})", _CORRUPT)
    ndim = head[3]
    header = 4 + 4 * ndim
    packed = stream.read(4 * ndim)
    if len(packed) < 4 * ndim:
        raise DataError(f"{shown} is truncated: {4 + len(packed)} bytes, shorter than its header", _CORRUPT)
    dims = struct.unpack(f">{ndim}I", packed)
    expected = header + math.prod(dims)  # Python integers: a hostile header cannot overflow them
    if expected > MAX_DATA_FILE_BYTES:
        raise DataError(f"{shown}: its header claims {list(dims)}, {expected:,} bytes, more than the "
                        f"{MAX_DATA_FILE_BYTES:,} netspec reads from one dataset file", _CORRUPT)
    if size is not None and size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise DataError(f"{shown} is {what}: {size} bytes, its header {list(dims)} needs {expected}", _CORRUPT)
    data = bytearray(expected - header)  # writable: torch warns on arrays over read-only buffers
    got = read_into(stream, memoryview(data))
    if got < len(data) or stream.read(1):
        what = "truncated" if got < len(data) else "longer than its header says"
        length = f"{header + got}" if got < len(data) else f"more than {expected}"
        raise DataError(f"{shown} is {what}: {length} bytes once decompressed, its header {list(dims)} "
                        f"needs {expected}", _CORRUPT)
    return np.frombuffer(data, np.uint8).reshape(dims)


def _plain_or_gz(path: Path) -> Path:
    return path if path.is_file() else path.with_name(path.name + ".gz")


# --- CIFAR python pickles -------------------------------------------------------------------


def read_pickle(path: Path) -> dict:
    """One CIFAR pickle, in the official python format (dicts of bytes keys, from Python 2)."""
    raw = read_regular_file(path, MAX_DATA_FILE_BYTES)
    shown = printable(path, None)
    try:
        content = load_pickle(raw)
    except PickleRefused as refused:
        raise DataError(f"{shown} is not a plain CIFAR file: it asks for {refused}; refused, nothing in it ran",
                        _NOT_CIFAR) from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, MemoryError, ...: all mean unreadable
        raise DataError(f"cannot read {shown}: {type(exc).__name__}: {printable(exc)}", _CORRUPT) from exc
    if not isinstance(content, dict):
        raise DataError(f"{shown} is not a CIFAR batch (a {kind_of(content)}, not a dict)", _CORRUPT)
    return {key.encode() if isinstance(key, str) else key: value for key, value in content.items()}


def read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> Arrays:
    """A batch's b"data" (N×3072: 1024 red, 1024 green, 1024 blue, row-major) as N×3×32×32."""
    batch = read_pickle(path)
    shown = printable(path, None)
    absent = [repr(key) for key in (b"data", label_key) if key not in batch]
    if absent:
        raise DataError(f"{shown} is not a CIFAR batch: it lacks {' and '.join(absent)}", _CORRUPT)
    data = array_of(batch[b"data"], path, b"data")
    labels = integers_of(batch[label_key], path, label_key)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW or len(data) != len(labels):
        raise DataError(f"{shown}: expected N×{CIFAR_ROW} uint8 data and N labels, found {data.dtype} "
                        f"{list(data.shape)} and {len(labels)} labels", _CORRUPT)
    _check_labels(labels, num_classes, path)
    return data.reshape(-1, 3, 32, 32).copy(), labels  # a copy: the pickle's bytes are read-only


def _names(path: Path, key: bytes, count: int) -> list[str]:
    """The `count` class names under `key` in a CIFAR meta file, as printable text."""
    meta = read_pickle(path)
    shown = printable(path, None)
    if key not in meta:
        raise DataError(f"{shown} lacks {key!r}", _CORRUPT)
    names = texts_of(meta[key], path, key)
    if len(names) != count:
        raise DataError(f"{shown}: {key!r} has {len(names)} names, the dataset has {count} classes", _CORRUPT)
    for index, name in enumerate(names):
        if not name or len(name) > MAX_CLASS_NAME_CHARS or not name.isprintable():
            raise DataError(f"{shown}: class name {index} (`{printable(name, 40)}`) is not 1 to "
                            f"{MAX_CLASS_NAME_CHARS} printable characters", _CORRUPT)
    return names


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{printable(path, None)} has labels outside 0..{num_classes - 1} "
                        f"(found {labels.min()}..{labels.max()})", _CORRUPT)
