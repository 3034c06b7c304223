"""Dataset files from someone else: data is only ever read as data.

Every hostile file is written here in its real on-disk format (CIFAR's pickles, IDX headers,
gzip members, PNG chunks, folders with links and FIFOs), as a dataset folder someone handed
over could hold it. Each must give a clean DataError naming the file (exit 2 through the CLI),
never run code, never wait on a FIFO, never allocate what a header merely claims. No network:
torchvision's own download functions are replaced at their lowest level.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import threading
import tracemalloc
import zlib
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from PIL import Image

from netspec.data import DataError, load_data
from netspec.data.files import CIFAR10_FILES, MAX_DATA_FILE_BYTES, load_files, read_cifar_batch, read_idx
from netspec.data.folder import MAX_IMAGE_PIXELS, decode, load_folder
from netspec.data.pickles import MAX_PICKLE_OPCODES
from tests.test_data import (
    cifar_rows,
    dump,
    make_flat_folder,
    pattern,
    rgb,
    write_cifar10,
    write_idx,
    write_mnist,
    write_png,
)

tv_utils = pytest.importorskip("torchvision.datasets.utils")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """torchvision's downloads fail as offline; a test that wants a download patches these again."""
    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_utils, "_get_redirect_url", offline)
    monkeypatch.setattr(tv_utils, "_urlretrieve", offline)
    monkeypatch.setattr("urllib.request.urlopen", offline)


def finishes(function, seconds: float = 30.0):
    """function()'s result or exception, failing the test (instead of hanging the suite) if it blocks."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 — handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --- CIFAR pickles carrying code ------------------------------------------------------------


class Payload:
    """Unpickling this calls `function(argument)`: what a hostile CIFAR batch would carry."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def payloads(marker: Path) -> dict:
    touch = f"open({str(marker)!r}, 'w').close()"
    return {"os.system": Payload(os.system, f"touch '{marker}'"),
            "builtins.exec": Payload(exec, touch),
            "builtins.eval": Payload(eval, touch)}


TINY_SPEC = """\
name: tiny
input: [3, 32, 32]
layers:
  - flatten
  - linear: 10
train: {{data: cifar10, data_root: "{root}", epochs: 1, batch_size: 8, device: cpu}}
"""


def tiny_spec(tmp_path: Path, root: Path) -> Path:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(root=root))
    return spec


def test_honest_cifar_trains_through_the_cli(tmp_path, cli):
    """The control for the hostile cases below: the same spec and layout, honest files, exit 0."""
    write_cifar10(tmp_path / "data")
    result = cli("train", tiny_spec(tmp_path, tmp_path / "data"), "--out", tmp_path / "run")
    assert result.code == 0, result.err
    assert (tmp_path / "run" / "last.safetensors").exists()


@pytest.mark.parametrize("victim", ["batches.meta", "data_batch_3", "test_batch"])
@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval"])
def test_reduce_payload_never_runs_during_train(tmp_path, cli, victim, kind):
    root = tmp_path / "evil"
    write_cifar10(root)
    marker = tmp_path / "marker"
    path = root / "cifar-10-batches-py" / victim
    key = b"label_names" if victim == "batches.meta" else b"data"
    dump(path, {key: payloads(marker)[kind], b"labels": [0]})
    result = cli("train", tiny_spec(tmp_path, root), "--out", tmp_path / "run")
    assert not marker.exists(), "the payload ran"
    assert result.code == 2, result.err
    assert str(path) in result.err and "not a plain CIFAR file" in result.err
    # as the pickle names it: protocol 2 writes Python 2's module names
    assert {"os.system": "`posix.system`", "builtins.exec": "`__builtin__.exec`",
            "builtins.eval": "`__builtin__.eval`"}[kind] in result.err
    assert "Traceback" not in result.err and not (tmp_path / "run" / "last.safetensors").exists()


def test_payload_inside_an_object_array_never_runs(tmp_path):
    """The numpy path: an object array's elements are unpickled after its dtype, which is refused."""
    write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    evil = np.empty(1, dtype=object)
    evil[0] = payloads(marker)["builtins.exec"]
    dump(path, {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"filenames": evil})
    with pytest.raises(DataError, match=r"data_batch_1 is not a plain CIFAR file: .*dtype `O8` \(an object array"):
        load_files("cifar10", tmp_path)
    assert not marker.exists()
    dump(path, {b"data": np.zeros((1, 3072), object), b"labels": [0]})  # a harmless object array is refused too
    with pytest.raises(DataError, match=r"an array of dtype `O8`"):
        load_files("cifar10", tmp_path)


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


# Hand-written opcode streams: what pickle.dump would never produce, but a file can hold.
HOSTILE_OPCODES = {
    # numpy's array reconstructor asked to build something other than an ndarray
    "reconstruct a dtype": (b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "dtype")
                            + b"K\x00\x85U\x01b\x87R.", "_reconstruct of something other than numpy.ndarray"),
    # Python 2's name for builtins: fix_imports must not map it past the allow-list
    "py2 builtins": (b"\x80\x02" + _global("__builtin__", "eval") + b"U\x011\x85R.", "`__builtin__.eval`"),
    "numpy.load": (b"\x80\x02" + _global("numpy", "load") + b"U\x01x\x85R.", "`numpy.load`"),
    "codecs to another encoding": (b"\x80\x02" + _global("_codecs", "encode") + b"X\x01\x00\x00\x00xX\x05\x00\x00\x00"
                                   b"rot13\x86R.", "_codecs.encode` of something other than text to latin-1"),
    "a structured dtype": (b"\x80\x02" + _global("numpy", "dtype") + b"U\x02u1K\x00K\x01\x87R(K\x03U\x01|N(U\x01a"
                           b"tNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.", "a structured numpy dtype"),
    "escape sequence in a name": (b"\x80\x02" + _global("os\x1b[2J", "system" + "x" * 300) + b".",
                                  "`os\\x1b[2J.system"),
}


@pytest.mark.parametrize("name", HOSTILE_OPCODES)
def test_hand_written_hostile_pickles_are_refused(tmp_path, name):
    raw, expected = HOSTILE_OPCODES[name]
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    with pytest.raises(DataError) as error:
        read_cifar_batch(path, b"labels", 10)
    message = str(error.value)
    assert f"{path} is not a plain CIFAR file" in message and expected in message
    assert "\x1b" not in message and len(message.splitlines()[0]) < len(str(path)) + 300


def test_array_whose_state_claims_a_huge_shape_is_malformed_not_allocated(tmp_path):
    """The shape comes from the file; only bytes the file really holds are ever used."""
    dtype = (_global("numpy", "dtype") + b"U\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xff"
             b"J\xff\xff\xff\xffK\x00tb")
    array = (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray") + b"K\x00\x85U\x01b\x87R"
             b"(K\x01(J\x00\x00\x00\x40J\x00\x0c\x00\x00t" + dtype + b"\x89U\x04abcdtb")  # (2^30, 3072) in 4 bytes
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02}(U\x04data" + array + b"U\x06labels]u.")
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"data_batch_1: the array under b'data' is malformed"):
            read_cifar_batch(path, b"labels", 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_opcode_bomb_is_refused_before_unpickling(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02" + b"]" * (MAX_PICKLE_OPCODES + 1) + b".")  # 80 bytes of list per byte of file
    with pytest.raises(DataError, match=rf"test_batch is not a plain CIFAR file: .*more than {MAX_PICKLE_OPCODES:,}"):
        read_cifar_batch(path, b"labels", 10)


# --- CIFAR pickles as the official files hold them ------------------------------------------


def py2_pickle(value) -> bytes:
    """`value` as Python 2's cPickle.dump(protocol=2) wrote CIFAR's files: str as SHORT_BINSTRING /
    BINSTRING, arrays through numpy.core.multiarray._reconstruct, numpy.ndarray and numpy.dtype."""
    def emit(v) -> bytes:
        if isinstance(v, bytes):
            return (b"U" + bytes([len(v)]) if len(v) < 256 else b"T" + struct.pack("<I", len(v))) + v
        if isinstance(v, int):
            return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)
        if isinstance(v, list):
            return b"](" + b"".join(emit(item) for item in v) + b"e"
        if isinstance(v, dict):
            return b"}(" + b"".join(emit(k) + emit(item) for k, item in v.items()) + b"u"
        assert isinstance(v, np.ndarray) and v.dtype == np.uint8
        shape = b"(" + b"".join(emit(n) for n in v.shape) + b"t"
        dtype = (_global("numpy", "dtype") + b"U\x02u1K\x00K\x01\x87R"
                 b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        return (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray") + b"K\x00\x85U\x01b\x87R"
                b"(K\x01" + shape + dtype + b"\x89" + emit(v.tobytes()) + b"tb")

    return b"\x80\x02" + emit(value) + b"."


def write_py2_cifar10(folder: Path):
    """CIFAR-10's seven files, 2 images per batch, as the official archive holds them."""
    folder.mkdir(parents=True)
    images, labels = pattern(12, 3, 32, 32), [int(n) for n in (np.arange(12) * 7) % 10]
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    for i, name in enumerate(CIFAR10_FILES[:-1]):
        part = slice(2 * i, 2 * i + 2)
        batch = {b"batch_label": b"training batch %d of 5" % (i + 1), b"labels": labels[part],
                 b"data": cifar_rows(images[part]), b"filenames": [b"img_%d.png" % n for n in range(2)]}
        (folder / name).write_bytes(py2_pickle(batch))
    (folder / "batches.meta").write_bytes(py2_pickle({b"num_cases_per_batch": 10000, b"label_names": names,
                                                      b"num_vis": 3072}))
    return images, labels, names


def test_official_python2_cifar_files_are_read(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    images, labels, names = write_py2_cifar10(folder)
    # the writer's bytes are a valid numpy pickle: plain pickle with numpy agrees on them
    reference = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(reference[b"data"], cifar_rows(images[10:]))
    (train_x, train_y), (test_x, test_y), classes = load_files("cifar10", tmp_path)
    np.testing.assert_array_equal(train_x, images[:10])
    np.testing.assert_array_equal(test_x, images[10:])
    assert train_y.tolist() == labels[:10] and test_y.tolist() == labels[10:]
    assert classes == [n.decode() for n in names] and train_x.flags.writeable


def test_python3_repickles_are_read(tmp_path):
    """Labels as a numpy array or numpy scalars, arrays at protocol 5 (_frombuffer), str keys."""
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    rows = cifar_rows(pattern(2, 3, 32, 32))
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({"data": rows, "labels": np.array([4, 5])}, f, protocol=5)
    dump(folder / "data_batch_4", {b"data": rows, b"labels": [np.int64(6), np.uint8(7)]})
    (train_x, train_y), _, _ = load_files("cifar10", tmp_path)
    assert train_y[4:6].tolist() == [4, 5] and train_y[-6:-4].tolist() == [6, 7]
    np.testing.assert_array_equal(train_x[4:6], rows.reshape(2, 3, 32, 32))


BAD_CONTENT = {
    "label is text": ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["3"]}, r"label 0 under b'labels' is a str"),
    "label is a bool": ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [True]}, r"is a bool, not an integer"),
    "label is a float": ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1.5]}, r"is a float, not an integer"),
    "labels are a dict": ({b"data": np.zeros((1, 3072), np.uint8), b"labels": {1: 2}}, r"not a list of integer"),
    "label beyond int64": ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [2**70]}, r"not a list of integer"),
    "data is a list": ({b"data": [[0] * 3072], b"labels": [0]}, r"b'data' is a list, not a numpy array"),
    "data is float": ({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]}, r"dtype `f4`"),
    "data is 1-D": ({b"data": np.zeros(3072, np.uint8), b"labels": [0]}, r"expected N×3072 uint8"),
    "not a dict": ([1, 2, 3], r"not a CIFAR batch \(a list, not a dict\)"),
}


@pytest.mark.parametrize("name", BAD_CONTENT)
def test_batch_contents_are_validated(tmp_path, name):
    content, expected = BAD_CONTENT[name]
    path = tmp_path / "data_batch_1"
    dump(path, content)
    with pytest.raises(DataError, match=expected):
        read_cifar_batch(path, b"labels", 10)


@pytest.mark.parametrize("names, expected", [
    ([b"a"] * 9, r"has 9 names, the dataset has 10 classes"),
    ([b"\xff\xfe"] + [b"a"] * 9, r"is not UTF-8 text"),
    ([b"cat\x1b[2J"] + [b"a"] * 9, r"class name 0 \(`cat\\x1b\[2J`\) is not 1 to 100 printable"),
    ([b""] + [b"a"] * 9, r"class name 0 \(``\)"),
    ([b"x" * 101] + [b"a"] * 9, r"is not 1 to 100 printable"),
    ([1] * 10, r"is not a list of names"),
])
def test_class_names_are_validated(tmp_path, names, expected):
    write_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py" / "batches.meta", {b"label_names": names})
    with pytest.raises(DataError, match=expected):
        load_files("cifar10", tmp_path)


def test_oversized_and_non_regular_cifar_files(tmp_path):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        f.truncate(MAX_DATA_FILE_BYTES + 1)  # sparse: costs no disk, and must cost no memory
    with pytest.raises(DataError, match=rf"test_batch is {MAX_DATA_FILE_BYTES + 1:,} bytes, more than"):
        read_cifar_batch(path, b"labels", 10)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DataError, match=r"test_batch is not a regular file"):
        finishes(lambda: read_cifar_batch(path, b"labels", 10))
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"test_batch is not a regular file"):
        finishes(lambda: read_cifar_batch(path, b"labels", 10))


def test_fifo_in_place_of_a_batch_counts_as_missing(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DataError, match=r"cannot download cifar10"):
        finishes(lambda: load_files("cifar10", tmp_path))


# --- IDX ------------------------------------------------------------------------------------


def idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("dims", [
    (2**31, 2**31, 4),                   # 2^64: wraps to 0 in int64, so an int64 product matched a header-only file
    (2**32 - 1, 2**32 - 1, 2**32 - 1),   # ~2^96: beyond int64 altogether
    (70_000, 100, 100),                  # 700 MB: beyond MAX_DATA_FILE_BYTES, a plausible-looking lie
])
def test_idx_header_claims_are_refused_before_allocation(tmp_path, dims):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header(2051, *dims))
    tracemalloc.start()
    try:
        with pytest.raises(DataError,
                           match=r"train-images-idx3-ubyte: its header claims \[.*\], [\d,]+ bytes, more than"):
            read_idx(path, 2051)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_idx_header_claiming_more_than_the_file_holds(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_header(2049, 50_000) + bytes(10))
    with pytest.raises(DataError,
                       match=r"t10k-labels-idx1-ubyte is truncated: 18 bytes, its header \[50000\] needs 50008"):
        read_idx(path, 2049)
    path.write_bytes(idx_header(2049, 0)[:6])  # cut inside the dimensions
    with pytest.raises(DataError, match=r"is not an IDX label file|is truncated: \d+ bytes, shorter than its header"):
        read_idx(path, 2049)


def test_idx_without_images(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((50, 0, 28), np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds no images \(its header says \[50, 0, 28\]\)"):
        load_files("mnist", tmp_path)
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"holds no images"):
        load_files("mnist", tmp_path)


def gzip_bomb(header: bytes, inflated_mib: int) -> bytes:
    """`header`, then `inflated_mib` MiB of zeros: one small gzip member repeated (a valid
    multi-member gzip file, as `cat a.gz b.gz` makes), about 1 KB per MiB."""
    member = gzip.compress(bytes(2**20), compresslevel=9)
    return gzip.compress(header) + member * inflated_mib


def test_gzip_bomb_is_inflated_only_as_far_as_its_header_says(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(idx_header(2051, 2, 28, 28), inflated_mib=1024))  # 1 GiB behind a 1.6 KB header
    assert path.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is longer than its header says: more than "
                                            r"1584 bytes once decompressed"):
            read_idx(path, 2051)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20


def test_gzip_that_holds_less_than_its_header_claims(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(2049, 1000) + bytes(10)))
    with pytest.raises(DataError, match=r"is truncated: 18 bytes once decompressed, its header \[1000\] needs 1008"):
        read_idx(path, 2049)
    path.write_bytes(gzip.compress(idx_header(2049, 1000) + bytes(1000))[:-12])  # the stream itself cut short
    with pytest.raises(DataError, match=r"cannot read .*train-labels-idx1-ubyte\.gz"):
        read_idx(path, 2049)


def test_idx_files_that_are_devices_fifos_or_huge(tmp_path, monkeypatch):
    path = tmp_path / "train-images-idx3-ubyte"
    path.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is not a regular file"):
        finishes(lambda: read_idx(path, 2051))
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DataError, match=r"is not a regular file"):
        finishes(lambda: read_idx(path, 2051))
    path.unlink()
    with open(path, "wb") as f:  # sparse; a header that agrees with the size is no excuse either
        f.write(idx_header(2051, 700, 1000, 1000))
        f.truncate(16 + 700 * 1000 * 1000)
    with pytest.raises(DataError, match=r"is 700,000,016 bytes, more than the 536,870,912"):
        read_idx(path, 2051)
    # through the dataset loader, a device in place of a file is a missing file: offline, a clean error
    write_mnist(tmp_path / "root")
    victim = tmp_path / "root" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    victim.unlink()
    victim.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"cannot download mnist"):
        finishes(lambda: load_files("mnist", tmp_path / "root"))


# --- image folders --------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for an 8-bit greyscale width × height image, with a few rows of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes((width + 1) * 4))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_png_decompression_bomb_is_a_clean_error(tmp_path):
    root = tmp_path / "imgs"
    make_flat_folder(root)
    bomb = root / "dog" / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))  # 10^10 pixels in 200 bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(DataError, match=r"image .*dog/bomb\.png: too large to decode safely \(Pillow: Image size "
                                        r"\(10000000000 pixels\) exceeds"):  # Pillow's own check, in Image.open
        load_folder(root, (3, 8, 8))
    # just over netspec's limit, under Pillow's, is refused as well; and at the decoder
    just_over = root / "dog" / "wide.png"
    bomb.unlink()
    just_over.write_bytes(png_claiming(MAX_IMAGE_PIXELS // 4096 + 1, 4096))
    with pytest.raises(DataError, match=r"wide\.png: the image is 16385×4096 = 67,112,960 pixels, "
                                        r"more than the 67,108,864 netspec decodes"):
        load_folder(root, (3, 8, 8))
    with pytest.raises(DataError, match=r"wide\.png: the image is 16385×4096 = 67,112,960 pixels, more than"):
        decode(just_over, "RGB", (8, 8))


@pytest.mark.parametrize("side, kind", [(40, "warning"), (50, "error")])
def test_pillows_own_bomb_check_is_an_error(tmp_path, monkeypatch, side, kind):
    """Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both are DataErrors."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as if set lower by whoever embeds netspec
    path = tmp_path / "big.png"
    write_png(path, np.zeros((side, side), np.uint8))
    with pytest.raises(DataError,
                       match=r"image .*big\.png: too large to decode safely \(Pillow: Image size \(\d+ pixels\)"):
        decode(path, "L", (8, 8))


def test_only_the_listed_formats_are_decoded(tmp_path):
    root = tmp_path / "imgs"
    make_flat_folder(root)
    # PostScript named .png: Pillow's EPS plugin would hand it to Ghostscript
    (root / "cat" / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    with pytest.raises(DataError, match=r"cannot read image .*cat/eps\.png: it is not a PNG, JPEG, BMP or WebP image"):
        load_folder(root, (3, 8, 8))
    (root / "cat" / "eps.png").unlink()
    Image.fromarray(rgb(3)).save(root / "cat" / "gif.png", format="GIF")
    with pytest.raises(DataError, match=r"gif\.png: it is not a PNG"):
        load_folder(root, (3, 8, 8))
    (root / "cat" / "gif.png").unlink()
    Image.fromarray(rgb(3)).save(root / "cat" / "jpeg.png", format="JPEG")  # a misnamed JPEG is still an image
    data = load_folder(root, (3, 8, 8))
    assert len(data.train) + len(data.val) == 18


def test_fifos_devices_and_broken_links_are_skipped_not_waited_on(tmp_path):
    root = tmp_path / "imgs"
    written = make_flat_folder(root)
    os.mkfifo(root / "cat" / "fifo.png")
    (root / "cat" / "zero.png").symlink_to("/dev/zero")
    (root / "dog" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    data = finishes(lambda: load_folder(root, (3, 8, 8)))
    assert len(data.train) + len(data.val) == len(written)
    assert any("skipped 3 entries" in note and "not regular files" in note for note in data.notes)


def test_symlinks_are_followed_to_images_anywhere(tmp_path):
    """A dataset assembled from links (the documented choice): files and class folders alike."""
    root, elsewhere = tmp_path / "imgs", tmp_path / "shared"
    make_flat_folder(root)
    write_png(elsewhere / "fox.png", rgb(200))
    for i in range(3):
        write_png(elsewhere / "owls" / f"{i}.png", rgb(210 + i))
    (root / "cat" / "linked.png").symlink_to(elsewhere / "fox.png")
    (root / "owl").symlink_to(elsewhere / "owls", target_is_directory=True)
    (root / "owl" / "loop").symlink_to(elsewhere, target_is_directory=True)  # a link loop is not descended into
    data = finishes(lambda: load_folder(root, (3, 8, 8)))
    assert data.classes == ["cat", "dog", "emu", "owl"]
    files = {f.relative_to(root).as_posix(): (ds, i) for ds in (data.train, data.val) for i, f in enumerate(ds.files)}
    assert {"cat/linked.png", "owl/0.png", "owl/1.png", "owl/2.png"} <= set(files)
    assert len(files) == 17 + 4  # nothing reached twice through the loop
    dataset, index = files["cat/linked.png"]
    assert np.array_equal(dataset[index][0].permute(1, 2, 0).numpy(), rgb(200))


def test_a_link_to_a_secret_is_named_not_quoted(tmp_path):
    root = tmp_path / "imgs"
    make_flat_folder(root)
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecret\n")
    (root / "dog" / "cute.png").symlink_to(secret)
    with pytest.raises(DataError) as error:
        load_folder(root, (3, 8, 8))
    message = str(error.value)
    assert "dog/cute.png" in message and "AAAAsecret" not in message and "PRIVATE" not in message


def test_control_characters_in_names(tmp_path):
    root = tmp_path / "imgs"
    make_flat_folder(root)
    write_png(root / "cat\x1b[2J" / "0.png", rgb(1))
    with pytest.raises(DataError) as error:
        load_folder(root, (3, 8, 8))
    assert "class folder `cat\\x1b[2J`" in str(error.value) and "\x1b" not in str(error.value)
    (root / "cat\x1b[2J" / "0.png").unlink()
    (root / "cat\x1b[2J").rmdir()
    os.mkdir(os.fsencode(root) + b"/caf\xe9")  # Latin-1 bytes: not UTF-8, a surrogate to Python
    write_png(Path(os.fsdecode(os.fsencode(root) + b"/caf\xe9/0.png")), rgb(2))
    with pytest.raises(DataError, match=r"class folder `caf\\udce9`.*bytes that are not UTF-8"):
        load_folder(root, (3, 8, 8))
    os.remove(os.fsencode(root) + b"/caf\xe9/0.png")
    os.rmdir(os.fsencode(root) + b"/caf\xe9")
    (root / "dog" / "bad\x1b]0;owned\x07.png").write_bytes(b"garbage")
    with pytest.raises(DataError) as error:
        load_folder(root, (3, 8, 8))
    assert "bad\\x1b]0;owned\\x07.png" in str(error.value) and "\x1b" not in str(error.value)


# --- downloads keep torchvision's MD5 checks ------------------------------------------------


def serve(monkeypatch, content: bytes) -> list[str]:
    """torchvision's downloads now 'fetch' `content`; returns the URLs asked for."""
    asked = []

    def urlretrieve(url, path, *args, **kwargs):
        asked.append(url)
        Path(path).write_bytes(content)

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", urlretrieve)
    return asked


def cifar_archive(tmp_path: Path) -> tuple[bytes, dict[str, str]]:
    """A cifar-10-python.tar.gz of small honest batches in the official Python 2 form (which
    torchvision itself unpickles, with str keys), and each member's MD5."""
    source = tmp_path / "source"
    write_py2_cifar10(source / "cifar-10-batches-py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (source / "cifar-10-batches-py").iterdir()}
    return buffer.getvalue(), md5s


def pin_md5s(monkeypatch, archive: bytes, md5s: dict[str, str]) -> None:
    """torchvision's pinned MD5s replaced by those of our small archive (theirs are of the real one)."""
    import torchvision.datasets as datasets

    cls = datasets.CIFAR10
    monkeypatch.setattr(cls, "tgz_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(cls, "train_list", [[name, md5s[name]] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5s[name]] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5s["batches.meta"]})


def test_download_with_a_bad_md5_is_a_clean_error(tmp_path, monkeypatch):
    asked = serve(monkeypatch, b"<html>captive portal</html>")
    with pytest.raises(DataError, match=r"cannot download cifar10 .*\n.*download failed: File not found or corrupted"):
        load_files("cifar10", tmp_path)
    assert asked == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert not (tmp_path / "cifar-10-batches-py").exists()  # the bad archive was never extracted
    asked.clear()
    with pytest.raises(DataError, match=r"cannot download mnist .*\n.*download failed"):
        load_files("mnist", tmp_path)
    assert asked and all(url.endswith("train-images-idx3-ubyte.gz") for url in asked)  # every mirror, then stop


def test_a_placed_archive_is_used_only_if_its_md5_matches(tmp_path, monkeypatch):
    archive, md5s = cifar_archive(tmp_path)
    pin_md5s(monkeypatch, archive, md5s)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive[:-1] + b"!")  # one byte changed
    with pytest.raises(DataError, match=r"cannot download cifar10"):  # no network to replace it: refused
        load_files("cifar10", root)
    assert not (root / "cifar-10-batches-py").exists()
    (root / "cifar-10-python.tar.gz").write_bytes(archive)
    (train_x, _), (test_x, _), classes = load_files("cifar10", root)  # verified, extracted, read
    assert train_x.shape == (10, 3, 32, 32) and test_x.shape == (2, 3, 32, 32) and classes[0] == "airplane"


def test_extracted_files_are_verified_too(tmp_path, monkeypatch):
    archive, md5s = cifar_archive(tmp_path)
    pin_md5s(monkeypatch, archive, {**md5s, "data_batch_4": "0" * 32})  # a member that does not match
    serve(monkeypatch, archive)
    with pytest.raises(DataError, match=r"download failed: Dataset not found or corrupted"):
        load_files("cifar10", tmp_path / "root")


def test_load_data_end_to_end_refuses_a_payload(tmp_path):
    """Through load_data too (what eval and export call), not only train."""
    write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": payloads(marker)["os.system"]})
    with pytest.raises(DataError, match=r"test_batch is not a plain CIFAR file"):
        load_data("cifar10", (3, 32, 32), root=tmp_path, val_only=True)
    assert not marker.exists()


def test_a_spec_input_too_large_to_hold_in_memory(tmp_path):
    """A spec's input decides the adapted size: 70 MNIST images at 3×30000×30000 are 1.89e11 bytes."""
    write_mnist(tmp_path)
    with pytest.raises(DataError, match=r"mnist: 70 images at 3×30000×30000 take 176\.0 GiB, more than"):
        load_data("mnist", (3, 30_000, 30_000), root=tmp_path)
    with pytest.raises(DataError, match=r"synthetic: 2,304 images at 3×4096×4096 take"):
        load_data("synthetic", (3, 4096, 4096))


@pytest.mark.parametrize("source, root, expected", [
    ("folder:" + "a" * 5000, None, r"cannot read a{100}.*: File name too long"),
    ("folder:a\x00b", None, r"folder: `a\\x00b` contains a NUL character"),
    ("cifar10", "/tmp/a\x00b", r"data_root `/tmp/a\\x00b` contains a NUL character"),
    ("folder:~nosuchuser-netspec/x", None, r"folder: `~nosuchuser-netspec/x`: Could not determine home directory"),
    ("mn\x1bist", None, r"unknown dataset `mn\\x1bist`"),
])
def test_bad_dataset_paths_are_clean_errors(tmp_path, source, root, expected):
    with pytest.raises(DataError, match=expected):
        load_data(source, (1, 28, 28), root=root)
