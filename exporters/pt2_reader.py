"""Reading a torch.export `.pt2` archive from anyone, without running anything it holds.

`torch.export.load` must never see such a file: it unpickles (`torch.load(weights_only=False)` for
pickled weights and constants, `pickle.loads` for opaque objects, and a weights-only load of the
sample inputs that falls back to a full unpickle), and its deserializer trusts the program's JSON:
node targets are looked up as any `torch.*` attribute (`torch.os.system` is one), symbolic sizes
are `sympy.sympify`-ed (an `eval`), guard strings become Python source that is `exec`-ed, and
node names are pasted into the Python code FX generates for the graph.

So this reader does, for exactly what torch 2.14's `torch.export.save` writes (a zip, entries
stored under one top folder: `models/model.json` the program, `data/weights/…` raw tensor bytes
described by `data/weights/model_weights_config.json`, the same for constants, `extra/…` our
card; `data/sample_inputs/model.pt` is a pickle and is never read):
- the zip: a regular file within MAX_PT2_BYTES, at most MAX_PT2_ENTRIES entries, each read only
  up to its declared size (itself within MAX_PT2_ENTRY_BYTES, all of them within
  MAX_PT2_TOTAL_BYTES: a zip bomb is refused before inflating), stored or deflated, not encrypted;
  entries are read by name from memory, never extracted;
- weights and constants from raw bytes with the config's dtype, sizes and strides, checked to fit
  the bytes; anything stored as a pickle (or a custom/opaque object) is refused;
- the program JSON checked before torch's deserializer gets it: every node's target one of
  ALLOWED_OPS (aten operators netspec's layers export to) or `operator.getitem`; every name a Python
  identifier; every symbolic expression made only of sympy's constructors in SYMPY_NAMES; guard code
  only integer arithmetic on the input's sizes; integer arguments within MAX_PT2_INT; no subgraphs;
  one tensor input, one tensor output; node metadata (stack traces, module paths) dropped.
"""

from __future__ import annotations

import io
import json
import keyword
import math
import re
import zipfile
from pathlib import Path

from netspec.errors import ModelFileError, printable
from netspec.reading import NotRegularFile, open_regular

MAX_PT2_BYTES = 2**32  # the whole archive: 4 GiB
MAX_PT2_ENTRIES = 10_000  # netspec writes ~20 plus one per weight tensor
MAX_PT2_ENTRY_BYTES = 2**31  # one entry, uncompressed: 2 GiB (one weight tensor)
MAX_PT2_TOTAL_BYTES = 2**32  # all entries together, uncompressed: 4 GiB
MAX_PT2_JSON_BYTES = 64 * 2**20  # the program and the configs: 64 MiB (resnet50's program is ~1 MiB)
MAX_PT2_NAME_CHARS = 512  # an entry name, an identifier, a symbolic expression
MAX_PT2_INT = 2**31  # an integer argument, and the product of a size list (expand, view): 2^31 values
MAX_PT2_GUARDS = 1_000  # guard expressions (dynamic sizes: ~3 per halving of H and W)
MAX_PT2_GUARD_CHARS = 4_096  # one guard expression
MODEL = "model"  # the one program torch.export.save writes

# aten operators (any overload) the shipped specs and netspec's layers export to; a file using
# another one was not written by netspec and is refused naming it
ALLOWED_OPS = frozenset("""
    adaptive_avg_pool2d add add_ avg_pool2d batch_norm bmm cat chunk clone contiguous conv2d div dropout
    elu expand feature_dropout flatten gelu group_norm hardsigmoid hardswish hardswish_ hardtanh hardtanh_
    layer_norm leaky_relu leaky_relu_ linear log_softmax matmul max_pool2d mean mul mul_ permute relu relu_
    reshape scaled_dot_product_attention select sigmoid silu silu_ softmax split split_with_sizes squeeze
    sub sym_size t tanh tanh_ transpose unflatten unsqueeze view
""".split())
ALLOWED_PYTHON_OPS = frozenset({"_operator.getitem"})
# what a symbolic size may be built from (torch writes sympy's srepr: `Symbol('s31', positive=True,
# integer=True)`, `Mul(Integer(2), Symbol(...))`); no Pow, no `**`: nothing that grows without bound
SYMPY_NAMES = frozenset("""
    Symbol Integer Rational Add Mul FloorDiv Mod PythonMod CleanDiv CeilDiv CeilToInt FloorToInt IntTrueDiv
    TruncToInt Max Min
    Eq Ne Lt Le Gt Ge And Or Not True False positive integer nonnegative real finite
""".split())
DTYPES = {1: "uint8", 2: "int8", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
          12: "bool", 13: "bfloat16"}  # torch._export.serde.schema.ScalarType → torch dtype name
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GUARD_SIZE = re.compile(r"L\['[A-Za-z_][A-Za-z0-9_]*'\]\.size\(\)\[[0-9]\]")
_GUARD_REST = re.compile(r"[n0-9+\-*/%()=!<> ]+")
_RANGE_KEY = re.compile(r"[A-Za-z0-9_*+\- ()]+")
_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_EXPR_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<symbol>'[a-z][0-9]{1,9}')|"
                         r"(?P<number>[0-9]{1,30})|(?P<pow>\*\*)|(?P<punct>[-+*/%(),=<>!]))")
_NAME_KEYS = {"name"}  # every such string is a graph value's or argument's name
_PATH_KEYS = {"parameter_name", "buffer_name", "tensor_constant_name", "fqn"}
_VALUE_MAPS = {"tensor_values", "sym_int_values", "sym_bool_values", "sym_float_values"}
_OBJECT_ARGUMENTS = {"as_graph", "as_operator", "as_custom_obj", "as_custom_objs"}
_INPUT_KINDS = {"parameter", "buffer", "tensor_constant", "user_input"}


def read_pt2(path: Path) -> tuple[object, dict]:
    """The archive's ExportedProgram (weights loaded, nothing unpickled) and its `extra/` entries."""
    where = printable(path)
    archive = _Archive(path, where)
    if archive.has(f"{_WEIGHTS}{MODEL}.pt") or archive.has(f"{_CONSTANTS}{MODEL}.pt"):
        raise _bad(where, "stores its weights as a pickle (torch's older archive layout); netspec never "
                   "unpickles a model file", "re-export it with `netspec export … --format pt2`")
    models = [n for n in archive.names if n.startswith("models/")]
    if models != [f"models/{MODEL}.json"]:
        raise _bad(where, f"holds {len(models)} programs ({', '.join(map(printable, models[:3]))}); "
                   f"netspec reads one, models/{MODEL}.json")
    program = archive.json(f"models/{MODEL}.json")
    check_program(program, where)
    state = _tensors(archive, _WEIGHTS, archive.json(f"{_WEIGHTS}{MODEL}_weights_config.json"), where)
    constants = _tensors(archive, _CONSTANTS, archive.json(f"{_CONSTANTS}{MODEL}_constants_config.json"), where)
    extra = {n[len("extra/"):]: archive.read(n) for n in archive.names if n.startswith("extra/")}
    return _deserialize(program, state, constants, where), extra


_WEIGHTS, _CONSTANTS = "data/weights/", "data/constants/"


def _bad(where: str, message: str, hint: str | None = None) -> ModelFileError:
    return ModelFileError.at(None, "model", f"{where} {message}", hint)


class _Archive:
    """The zip's entries by name (under its one top folder), read within the limits above."""

    def __init__(self, path: Path, where: str):
        self.where = where
        try:
            with open_regular(path) as file:  # a FIFO or device is refused without blocking
                data = file.read(MAX_PT2_BYTES + 1)
        except FileNotFoundError:
            raise ModelFileError.at(None, "model", f"{where}: no such file") from None
        except NotRegularFile as e:
            raise _bad(where, f"is {e.strerror}") from None
        except OSError as e:
            raise ModelFileError.at(None, "model", f"{where}: cannot read it ({e.strerror or e})") from None
        if len(data) > MAX_PT2_BYTES:
            raise _bad(where, f"is over {MAX_PT2_BYTES:,} bytes, the limit for a .pt2 archive")
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise _bad(where, f"is not a torch.export archive (not a readable zip: {printable(e)[:120]})") from None
        self.entries = self._check_entries(infos)
        self.names = sorted(self.entries)

    def _check_entries(self, infos) -> dict:
        if len(infos) > MAX_PT2_ENTRIES:
            raise _bad(self.where, f"holds {len(infos):,} entries; the limit is {MAX_PT2_ENTRIES:,}")
        tops = {info.filename.split("/", 1)[0] for info in infos}
        entries, total = {}, 0
        for info in infos:
            name = info.filename
            if (len(name) > MAX_PT2_NAME_CHARS or name.startswith("/") or "\\" in name or "\0" in name
                    or ".." in name.split("/") or "/" not in name or len(tops) != 1):
                raise _bad(self.where, f"has an entry named `{printable(name)[:120]}`; a torch.export archive "
                           "keeps every entry under one top folder")
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _bad(self.where, f"entry `{printable(name)[:120]}` is encrypted or compressed with "
                           f"method {info.compress_type}; only stored and deflated entries are read")
            if info.file_size > MAX_PT2_ENTRY_BYTES:
                raise _bad(self.where, f"entry `{printable(name)[:120]}` claims {info.file_size:,} bytes; the "
                           f"limit is {MAX_PT2_ENTRY_BYTES:,}")
            total += info.file_size
            entries[name.split("/", 1)[1]] = info
        if total > MAX_PT2_TOTAL_BYTES:
            raise _bad(self.where, f"claims {total:,} bytes once inflated; the limit is {MAX_PT2_TOTAL_BYTES:,}")
        if len(entries) != len(infos):
            raise _bad(self.where, "holds two entries with the same name")
        return entries

    def has(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str, limit: int = MAX_PT2_ENTRY_BYTES) -> bytes:
        if name not in self.entries:
            raise _bad(self.where, f"has no `{printable(name)}`; it was not written by torch.export.save")
        info = self.entries[name]
        if info.file_size > limit:
            raise _bad(self.where, f"entry `{printable(name)}` is {info.file_size:,} bytes; the limit is {limit:,}")
        try:
            with self.zip.open(info) as entry:  # inflates only up to the declared size (checked above)
                data = entry.read(info.file_size + 1)
        except Exception as e:  # BadZipFile (a bad CRC), zlib.error, EOFError: a damaged entry
            raise _bad(self.where, f"entry `{printable(name)}` is damaged ({printable(e)[:120]})") from None
        if len(data) != info.file_size:
            raise _bad(self.where, f"entry `{printable(name)}` does not hold the {info.file_size:,} bytes it claims")
        return data

    def json(self, name: str):
        try:
            return json.loads(self.read(name, MAX_PT2_JSON_BYTES))
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise _bad(self.where, f"entry `{printable(name)}` is not valid JSON ({printable(e)[:80]})") from None


def check_program(program, where: str) -> None:
    """The program JSON holds nothing torch's deserializer would turn into code (see the top)."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise _bad(where, "has no program in models/model.json")
    check_guards(program.get("guards_code") or [], where)
    module = program["graph_module"]
    module["metadata"] = {}
    graph = module.get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise _bad(where, "has no graph in models/model.json")
    if graph.get("custom_obj_values"):
        raise _bad(where, "holds custom objects, which only a pickle can restore; netspec refuses them")
    for node in graph["nodes"]:
        if not isinstance(node, dict):
            raise _bad(where, "has a graph node that is not an object")
        node["metadata"] = {}  # stack traces and module paths: text FX would paste into generated code
        target = node.get("target")
        if not isinstance(target, str) or not _allowed_target(target):
            raise _bad(where, f"calls `{printable(str(target))[:80]}`, which netspec does not run",
                       f"netspec runs only the {len(ALLOWED_OPS)} aten operators its layers export to "
                       "(ALLOWED_OPS in netspec/exporters/pt2_reader.py)")
    _check_signature(module.get("signature"), where)
    for name in program.get("range_constraints") or {}:  # `s31`, `16*s9`: dictionary keys, never evaluated
        if not isinstance(name, str) or len(name) > MAX_PT2_NAME_CHARS or not _RANGE_KEY.fullmatch(name):
            raise _bad(where, f"constrains a size named `{printable(str(name))[:80]}`")
    _walk(program, where, None)


def check_guards(guards, where: str) -> None:
    """Guard code (Python that torch compiles and runs on each call, e.g. `(L['input'].size()[2] // 2) == …`
    for a dynamic size): only integer arithmetic and comparisons on the input's sizes."""
    if not isinstance(guards, list) or len(guards) > MAX_PT2_GUARDS:
        raise _bad(where, f"carries {len(guards) if isinstance(guards, list) else 'malformed'} guards; "
                   f"the limit is {MAX_PT2_GUARDS:,}")
    for guard in guards:
        plain = _GUARD_SIZE.sub("n", guard) if isinstance(guard, str) and len(guard) <= MAX_PT2_GUARD_CHARS else ""
        if not _GUARD_REST.fullmatch(plain) or any(t in plain for t in ("**", "<<", ">>")):
            raise _bad(where, f"carries guard code `{printable(str(guard))[:80]}` that is not arithmetic on its "
                       "input's sizes (torch would execute it as Python)")


def _allowed_target(target: str) -> bool:
    parts = target.split(".")
    if target in ALLOWED_PYTHON_OPS:
        return True
    return (len(parts) == 5 and parts[:3] == ["torch", "ops", "aten"] and parts[3] in ALLOWED_OPS
            and _IDENTIFIER.fullmatch(parts[4]) is not None)


def _check_signature(signature, where: str) -> None:
    if not isinstance(signature, dict):
        raise _bad(where, "has no graph signature")
    inputs, outputs = signature.get("input_specs") or [], signature.get("output_specs") or []
    kinds = [next(iter(spec), None) if isinstance(spec, dict) and len(spec) == 1 else None for spec in inputs]
    if any(kind not in _INPUT_KINDS for kind in kinds) or kinds.count("user_input") != 1:
        raise _bad(where, f"takes inputs of kinds {sorted(set(map(str, kinds)))}; a netspec model takes one "
                   "tensor plus its parameters, buffers and constant tensors")
    out = [next(iter(spec), None) if isinstance(spec, dict) and len(spec) == 1 else None for spec in outputs]
    if out != ["user_output"]:
        raise _bad(where, f"gives outputs of kinds {list(map(str, out))[:5]}; a netspec model gives one tensor")


def _walk(value, where: str, key: str | None) -> None:
    """Every name an identifier, every path dotted identifiers, every symbolic expression safe."""
    stack = [(value, key)]
    while stack:
        value, key = stack.pop()
        if isinstance(value, dict):
            if key in _VALUE_MAPS:
                for name in value:
                    _check_name(name, where)
            stack += [(v, k) for k, v in value.items()]
            if _OBJECT_ARGUMENTS.intersection(value):  # subgraphs, operators and objects as arguments
                raise _bad(where, f"passes {'/'.join(sorted(_OBJECT_ARGUMENTS.intersection(value)))} to an "
                           "operator (a subgraph, an operator or a custom object); netspec models pass tensors "
                           "and numbers")
        elif isinstance(value, list):
            if key == "as_ints" and _product_over(value, MAX_PT2_INT):
                raise _bad(where, f"passes the size {value[:8]} to an operator; its product is over {MAX_PT2_INT:,}")
            stack += [(v, key) for v in value]
        elif isinstance(value, int) and key == "as_int" and abs(value) > MAX_PT2_INT:
            raise _bad(where, f"passes the integer {value:,} to an operator; the limit is {MAX_PT2_INT:,}")
        elif isinstance(value, str):
            if key in _NAME_KEYS:
                _check_name(value, where)
            elif key in _PATH_KEYS and (len(value) > MAX_PT2_NAME_CHARS or not _PATH.fullmatch(value)) \
                    and not (key == "fqn" and value == ""):  # the root module's path
                raise _bad(where, f"names a parameter `{printable(value)[:80]}` that is not a dotted identifier")
            elif key == "expr_str":
                check_expression(value, where)


def _product_over(values: list, limit: int) -> bool:
    """Whether the product of the integers' magnitudes exceeds `limit` (stops as soon as it does)."""
    product = 1
    for v in values:
        if isinstance(v, int) and v:
            product *= abs(v)
            if product > limit:
                return True
    return False


def _check_name(name, where: str) -> None:
    if (not isinstance(name, str) or len(name) > MAX_PT2_NAME_CHARS or not _IDENTIFIER.fullmatch(name)
            or keyword.iskeyword(name)):
        raise _bad(where, f"has a graph value named `{printable(str(name))[:80]}`, which is not a Python identifier")


def check_expression(text: str, where: str) -> None:
    """A symbolic size as torch writes it (sympy's srepr), made only of SYMPY_NAMES; refused otherwise
    (torch passes it to sympy.sympify, which evaluates it as Python)."""
    position, ok = 0, len(text) <= MAX_PT2_NAME_CHARS
    while ok and position < len(text):
        token = _EXPR_TOKEN.match(text, position)
        if token is None or token.end() == position or token["pow"]:
            ok = False
        elif token["name"] and token["name"] not in SYMPY_NAMES:
            ok = False
        else:
            position = token.end()
    if not ok or not text.strip():
        raise _bad(where, f"has a symbolic size `{printable(text)[:80]}` that is not a plain sympy expression")


def _tensors(archive: _Archive, folder: str, config, where: str) -> dict:
    """Weights or constants from raw bytes; a pickled or custom-object entry is refused."""
    import torch

    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _bad(where, f"has a malformed {folder}…_config.json")
    tensors, storages = {}, {}
    for fqn, meta in entries.items():
        shown = printable(str(fqn))[:80]
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise _bad(where, f"stores `{shown}` as a pickle; netspec never unpickles a model file",
                       "export it with `netspec export … --format pt2`")
        path_name = meta.get("path_name")
        prefix = "weight_" if folder == _WEIGHTS else "tensor_"
        if not isinstance(path_name, str) or not re.fullmatch(prefix + "[0-9]{1,9}", path_name):
            raise _bad(where, f"stores `{shown}` as `{printable(str(path_name))[:40]}`, not as raw tensor bytes "
                       "(custom and opaque objects are pickles: refused)")
        dtype, sizes, strides, offset = _tensor_meta(meta.get("tensor_meta"), where, shown)
        if path_name not in storages:
            raw = bytearray(archive.read(folder + path_name))
            if len(raw) % dtype.itemsize:
                raise _bad(where, f"`{shown}`: {len(raw):,} bytes is not a whole number of {dtype} values")
            storages[path_name] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        storage = storages[path_name]
        if storage.dtype != dtype:
            raise _bad(where, f"`{shown}` shares bytes with a tensor of another dtype")
        extent = offset + sum((s - 1) * t for s, t in zip(sizes, strides)) + 1 if all(sizes) else 0
        if extent > storage.numel():
            raise _bad(where, f"`{shown}` of size {list(sizes)} needs {extent:,} values; "
                       f"`{path_name}` holds {storage.numel():,}")
        tensors[fqn] = torch.as_strided(storage, sizes, strides, offset) if extent else torch.zeros(sizes, dtype=dtype)
    return tensors


def _tensor_meta(meta, where: str, shown: str):
    import torch

    try:
        dtype = getattr(torch, DTYPES[meta["dtype"]])
        sizes = [int(_plain(s)) for s in meta["sizes"]]
        strides = [int(_plain(s)) for s in meta["strides"]]
        offset = int(_plain(meta["storage_offset"]))
        device = meta.get("device", {}).get("type", "cpu")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _bad(where, f"describes `{shown}` with a dtype, size or stride netspec does not read") from None
    if (len(sizes) != len(strides) or len(sizes) > 8 or min([*sizes, *strides, offset, 0]) < 0
            or math.prod(sizes) > MAX_PT2_ENTRY_BYTES or device != "cpu"):
        raise _bad(where, f"describes `{shown}` with sizes {sizes[:8]}, strides {strides[:8]} on {printable(device)}")
    return dtype, sizes, strides, offset


def _plain(value):
    """`{"as_int": 3}` → 3 (a weight has no symbolic size)."""
    if not isinstance(value, dict) or set(value) != {"as_int"} or not isinstance(value["as_int"], int):
        raise ValueError(value)
    return value["as_int"]


def _deserialize(program: dict, state: dict, constants: dict, where: str):
    """torch's deserializer on the checked JSON, given the tensors (never bytes: bytes it would unpickle)."""
    import torch
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    params = {s["parameter"]["parameter_name"] for s in program["graph_module"]["signature"]["input_specs"]
              if "parameter" in s and isinstance(s["parameter"], dict)}
    state = {k: torch.nn.Parameter(v, requires_grad=False) if k in params else v for k, v in state.items()}
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        return ExportedProgramDeserializer().deserialize(serialized, state, constants, None)
    except RecursionError:
        raise _bad(where, "holds a program nested too deeply to read") from None
    except Exception as e:  # SerializeError, KeyError, AssertionError, …: a program torch cannot rebuild
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _bad(where, f"is not a loadable torch.export program ({printable(first)[:160]})") from None
