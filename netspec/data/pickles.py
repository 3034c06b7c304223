"""A restricted unpickler for data files (CIFAR's python batches): data comes out, code never runs.

`pickle.load` calls whatever a file names (`os.system`, `builtins.exec`, ...), so a dataset
folder someone handed over could run code as it is read. Here builtin values (dicts, lists,
tuples, bytes, str, numbers) come out as usual, since they need no global; every global a pickle
names goes through `find_class`, and only those a real CIFAR file holds resolve, each to an
inert stand-in of ours rather than to numpy: nothing numpy does while unpickling (allocating a
shape the file claims, object dtypes, structured dtypes) can be reached. The stand-ins become
numpy arrays afterwards (`array_of`, `integers_of`), once their dtype, shape and byte count agree.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from netspec.data import DataError, printable

_CORRUPT = "the file is corrupt or of another format; delete it to download again"

# A real CIFAR pickle (Python 2's cPickle, protocol 2) holds about 200,000 operations (CIFAR-100's
# `train`: a label, a coarse label and a file name per image), a Python 3 re-pickle about 500,000.
# Each operation builds at most one small object, so this cap bounds what a file of one-byte
# operations (`]]]]…`: 80 bytes of empty list per byte of file) can make us allocate to ~200 MB.
MAX_PICKLE_OPCODES = 2_000_000
# Array dtypes a CIFAR pickle may hold: images are uint8, and integer label arrays are harmless.
PICKLE_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8")


class PickleRefused(pickle.UnpicklingError):
    """The pickle asks for something a data file must not contain; the message says what."""


class _NdarrayMarker:
    """What the global `numpy.ndarray` stands for: only ever `_reconstruct`'s first argument."""

    __slots__ = ()  # a BUILD on it fails: the one shared marker cannot be given attributes


_NDARRAY = _NdarrayMarker()


class PickledDtype:
    """Inert stand-in for `numpy.dtype(code, align, copy)` plus its BUILD state (byte order, ...).

    Only plain integer dtypes are accepted, checked as the pickle is read: object arrays (`O8`)
    can hold any Python object, structured ones (fields, subarrays) are not CIFAR's."""

    code: str | None = None  # stays None if a pickle makes one without calling __init__
    order = "|"

    def __init__(self, code=None, align=False, copy=True):
        code = _ascii(code)
        if code is None or code not in PICKLE_DTYPES:
            kind = " (an object array, which can hold any Python object)" if code and code[0] == "O" else ""
            raise PickleRefused(f"an array of dtype `{printable(code, 20)}`{kind}")
        self.code = code

    def __setstate__(self, state):
        plain = isinstance(state, tuple) and len(state) >= 5 and all(part is None for part in state[2:5])
        order = _ascii(state[1]) if plain else None
        if order not in ("<", ">", "|", "="):
            raise PickleRefused("a structured numpy dtype (fields or subarrays)")
        self.order = order

    def numpy(self) -> np.dtype:
        if self.code is None:
            raise PickleRefused("a numpy dtype without a type code")
        return np.dtype(self.code if self.order == "|" else self.order + self.code)


class PickledArray:
    """Inert stand-in for an ndarray: `_reconstruct` makes an empty one and BUILD gives its state
    (version, shape, PickledDtype, Fortran order, raw bytes); converted by `array_of` afterwards."""

    state = None

    def __setstate__(self, state):
        self.state = state


class PickledScalar:
    """Inert stand-in for a numpy scalar, pickled as `scalar(dtype, raw bytes)`."""

    def __init__(self, dtype=None, raw=None):
        self.dtype, self.raw = dtype, raw

    def value(self):
        """The integer it holds, or itself (which the caller refuses) if it is not one."""
        try:
            dtype = self.dtype.numpy() if isinstance(self.dtype, PickledDtype) else None
        except PickleRefused:
            return self
        if dtype is None or not isinstance(self.raw, bytes) or len(self.raw) != dtype.itemsize:
            return self
        return int(np.frombuffer(self.raw, dtype)[0])


def _reconstruct(subtype=None, shape=None, typecode=None) -> PickledArray:
    """numpy.core.multiarray._reconstruct: the shape and code given here are placeholders (numpy
    writes (0,) and b"b"); the real ones come with BUILD. Nothing is allocated."""
    if subtype is not _NDARRAY:
        raise PickleRefused("numpy's _reconstruct of something other than numpy.ndarray")
    return PickledArray()


def _frombuffer(buffer=None, dtype=None, shape=None, order="C") -> PickledArray:
    """numpy._core.numeric._frombuffer: how protocol 5 pickles an array."""
    array = PickledArray()
    array.state = (1, shape, dtype, order == "F", buffer)
    return array


def _empty_bytes(*args) -> bytes:
    """`bytes()`: how Python 3 pickles b"" at protocols 0 to 2 (other bytes come through _latin1)."""
    if args:
        raise PickleRefused("`bytes` with arguments")
    return b""


def _latin1(text=None, encoding="latin1") -> bytes:
    """`_codecs.encode(text, "latin1")`: how Python 3 pickles bytes at protocols 0 to 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise PickleRefused("`_codecs.encode` of something other than text to latin-1")
    return text.encode("latin-1")


# (module, name) → what a CIFAR pickle gets for it. numpy 1 writes `numpy.core`, numpy 2 `numpy._core`.
ALLOWED_GLOBALS = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): PickledScalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): PickledDtype,
    ("_codecs", "encode"): _latin1,
    **{(builtins, "bytes"): _empty_bytes for builtins in ("builtins", "__builtin__")},
}


class DataUnpickler(pickle.Unpickler):
    """Builtin values (dicts, lists, tuples, bytes, str, numbers) need no global; every global a
    pickle names (GLOBAL, STACK_GLOBAL, INST, EXT*) comes through here, and only ALLOWED_GLOBALS
    resolve, to stand-ins that run no code of numpy's or anyone's."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise PickleRefused(f"`{printable(f'{module}.{name}', 80)}`, which would run code") from None


def load_pickle(raw: bytes):
    """The value pickled in `raw`; PickleRefused if it names anything but ALLOWED_GLOBALS or is
    longer than MAX_PICKLE_OPCODES (counted by a dry parse that builds nothing, before loading)."""
    for count, _ in enumerate(pickletools.genops(raw), 1):
        if count > MAX_PICKLE_OPCODES:
            raise PickleRefused(f"more than {MAX_PICKLE_OPCODES:,} pickle operations")
    # encoding="bytes": Python 2's str (CIFAR's keys, names and pixel data) stays bytes
    return DataUnpickler(io.BytesIO(raw), encoding="bytes").load()


def array_of(value, path: Path, key: bytes) -> np.ndarray:
    """A PickledArray as a read-only numpy array over its bytes, once shape, dtype and length agree."""
    shown = printable(path, None)
    state = value.state if isinstance(value, PickledArray) else None
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise DataError(f"{shown}: {key!r} is a {kind_of(value)}, not a numpy array", _CORRUPT)
    _, shape, dtype, fortran, raw = state if len(state) == 5 else (1, *state)
    try:
        dtype = dtype.numpy() if isinstance(dtype, PickledDtype) else None
    except PickleRefused:
        dtype = None
    valid_shape = isinstance(shape, tuple) and len(shape) <= 32 and all(type(n) is int and n >= 0 for n in shape)
    if dtype is None or not valid_shape or not isinstance(raw, (bytes, bytearray)) \
            or len(raw) != math.prod(shape) * dtype.itemsize:
        raise DataError(f"{shown}: the array under {key!r} is malformed (its shape, dtype and bytes disagree)",
                        _CORRUPT)
    return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")


def integers_of(value, path: Path, key: bytes) -> np.ndarray:
    """Labels: a list of ints (official), of numpy integer scalars, or a 1-D integer array → int64."""
    shown = printable(path, None)
    if isinstance(value, PickledArray):
        array = array_of(value, path, key)
        if array.ndim == 1:
            return array.astype(np.int64)
    elif isinstance(value, (list, tuple)):
        items = [item.value() if isinstance(item, PickledScalar) else item for item in value]
        wrong = next((i for i, item in enumerate(items) if type(item) is not int), None)
        if wrong is None and all(-2**63 <= item < 2**63 for item in items):
            return np.array(items, dtype=np.int64)
        if wrong is not None:
            raise DataError(f"{shown}: label {wrong} under {key!r} is a {kind_of(value[wrong])}, not an integer",
                            _CORRUPT)
    raise DataError(f"{shown}: {key!r} is not a list of integer labels", _CORRUPT)


def texts_of(value, path: Path, key: bytes) -> list[str]:
    """Class names: a list of UTF-8 bytes (official) or of str."""
    shown = printable(path, None)
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, (bytes, str)) for item in value):
        raise DataError(f"{shown}: {key!r} is not a list of names", _CORRUPT)
    try:
        return [item.decode("utf-8") if isinstance(item, bytes) else item for item in value]
    except UnicodeDecodeError as exc:
        raise DataError(f"{shown}: a name under {key!r} is not UTF-8 text ({exc.reason})", _CORRUPT) from exc


def _ascii(text) -> str | None:
    """A dtype code or byte order, which Python 2 pickles as bytes and Python 3 as str."""
    if isinstance(text, bytes):
        return text.decode("ascii", "replace")
    return text if isinstance(text, str) else None


def kind_of(value) -> str:
    names = {PickledArray: "numpy array", PickledScalar: "numpy scalar", PickledDtype: "numpy dtype"}
    return names.get(type(value), type(value).__name__)
