"""The one file format of a DynReach run directory: a JSON document plus a safetensors file.

Nothing a run directory holds is ever unpickled: opening a pickle runs whatever code it names, so
a run directory copied from elsewhere could not be opened safely. Instead every record (a sweep
cell, a training checkpoint) is a pair of files:

    <name>.json          the record's structure: dicts, lists, strings, numbers, None; every
                         array or tensor is a reference into the sibling file
    <name>.safetensors   the arrays / tensors themselves, exact dtype and shape

JSON cannot say everything a record holds, so a few values are tagged objects of one key:
`{"$float": "nan" | "inf" | "-inf"}` (strict JSON has no non-finite numbers), `{"$tuple": [...]}`
(a tuple is not equal to a list, and configurations compare as tuples), `{"$dict": [[k, v], ...]}`
(keys that are not strings, e.g. the optimizer's parameter indices), `{"$array": name}` (a numpy
array), `{"$scalar": name}` (a numpy scalar, kept as a 0-d array) and `{"$tensor": name}` (a torch
tensor). Plain dict keys never start with "$", so a tag cannot be mistaken for data.

Writing is atomic per pair: both files go to temporary names, the safetensors file is moved into
place first and the JSON last, so a JSON's existence means the record is complete. Both carry the
same random token; reading checks it, so a pair from two different writes is an error, never a
silent mix.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

Backend = Literal["numpy", "torch"]
FORMAT_VERSION = 1
TAGS = ("$float", "$tuple", "$dict", "$array", "$scalar", "$tensor")
# The numpy dtypes safetensors stores exactly (its numpy backend).
NUMPY_DTYPES = frozenset(np.dtype(t) for t in (
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "complex64"))
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def arrays_path(json_path: Path | str) -> Path:
    """The safetensors file that holds the arrays of the record `json_path`."""
    return Path(json_path).with_suffix(".safetensors")


def _torch():
    """torch if it is already imported (a tensor can only exist then), else None."""
    return sys.modules.get("torch")


def _label(where: str) -> str:
    return where or "<top level>"


class _Encoder:
    """Turns a record into JSON-able data, collecting its arrays under path-like names."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.arrays: dict[str, Any] = {}

    def _store(self, value: Any, where: str) -> str:
        name, n = where or "value", 1
        while name in self.arrays:   # a key holding "." could collide with a nested path
            name, n = f"{where}~{n}", n + 1
        self.arrays[name] = value
        return name

    def _array(self, a: np.ndarray, where: str) -> np.ndarray:
        if a.dtype not in NUMPY_DTYPES:
            raise TypeError(f"{_label(where)}: numpy dtype {a.dtype} cannot be stored (safetensors "
                            f"holds {', '.join(sorted(str(d) for d in NUMPY_DTYPES))})")
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        return a if a.flags.c_contiguous else a.copy(order="C")   # (keeps 0-d arrays 0-d)

    def __call__(self, x: Any, where: str = "") -> Any:
        torch = _torch()
        if x is None or isinstance(x, (bool, str)):
            return str(x) if isinstance(x, np.str_) else x
        if isinstance(x, np.generic):   # before int/float: np.float64 is a float subclass
            return {"$scalar": self._store(self._array(np.asarray(x), where), where)}
        if isinstance(x, int):
            return x
        if isinstance(x, float):
            if math.isfinite(x):
                return x
            return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
        if isinstance(x, np.ndarray):
            return {"$array": self._store(self._array(x, where), where)}
        if torch is not None and isinstance(x, torch.Tensor):
            if self.backend != "torch":
                raise TypeError(f"{_label(where)}: a torch tensor; this record stores numpy "
                                "arrays only (convert with .numpy())")
            return {"$tensor": self._store(x.detach().cpu().contiguous(), where)}
        if isinstance(x, tuple):
            return {"$tuple": [self(v, f"{where}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [self(v, f"{where}.{i}") for i, v in enumerate(x)]
        if isinstance(x, dict):
            at = (lambda k: f"{where}.{k}" if where else str(k))
            if all(isinstance(k, str) and not k.startswith("$") for k in x):
                return {k: self(v, at(k)) for k, v in x.items()}
            return {"$dict": [[self(k, at(k)), self(v, at(k))] for k, v in x.items()]}
        raise TypeError(f"{_label(where)}: cannot store a {type(x).__module__}."
                        f"{type(x).__qualname__} (expected numpy arrays or scalars, tensors, "
                        "dicts, lists, tuples, str, int, float, bool or None)")


class _Decoder:
    """The inverse of `_Encoder`: resolves references into the loaded arrays, strictly."""

    def __init__(self, arrays: dict[str, Any], source: Path) -> None:
        self.arrays, self.source, self.used = arrays, source, set()

    def _get(self, name: Any, tag: str) -> Any:
        if not isinstance(name, str) or name not in self.arrays:
            raise ValueError(f"{self.source}: {tag} reference {name!r} names no array of "
                             f"{arrays_path(self.source).name}")
        self.used.add(name)
        return self.arrays[name]

    def __call__(self, x: Any) -> Any:
        if isinstance(x, list):
            return [self(v) for v in x]
        if not isinstance(x, dict):
            return x
        tagged = [k for k in x if k.startswith("$")]
        if not tagged:
            return {k: self(v) for k, v in x.items()}
        if len(x) != 1 or tagged[0] not in TAGS:
            raise ValueError(f"{self.source}: malformed entry {sorted(x)} (a tagged value has one "
                             f"key, one of {', '.join(TAGS)})")
        tag, v = tagged[0], x[tagged[0]]
        if tag == "$float":
            if v not in _NONFINITE:
                raise ValueError(f"{self.source}: $float {v!r}, expected one of nan, inf, -inf")
            return _NONFINITE[v]
        if tag == "$tuple":
            return tuple(self(e) for e in _expect_list(v, tag, self.source))
        if tag == "$dict":
            pairs = _expect_list(v, tag, self.source)
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise ValueError(f"{self.source}: $dict holds [key, value] pairs")
            return {self(k): self(e) for k, e in pairs}
        a = self._get(v, tag)
        torch = _torch()
        is_tensor = torch is not None and isinstance(a, torch.Tensor)
        if tag == "$tensor":
            if not is_tensor:
                raise ValueError(f"{self.source}: $tensor {v!r} read without torch")
            return a
        a = a.numpy() if is_tensor else a
        if tag == "$scalar":
            if a.ndim != 0:
                raise ValueError(f"{self.source}: $scalar {v!r} has shape {a.shape}, expected ()")
            return a[()]
        return a


def _expect_list(v: Any, tag: str, source: Path) -> list:
    if not isinstance(v, list):
        raise ValueError(f"{source}: {tag} holds a list, got {type(v).__name__}")
    return v


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_pair(json_path: Path | str, record: Any, *, kind: str, backend: Backend,
               replace: bool = False) -> None:
    """Write `record` as `json_path` + its safetensors file, atomically (module docstring).

    An existing record is never overwritten unless `replace=True`; then its JSON is removed
    first, so an interrupted replacement leaves no record (redone) rather than a mixed one.
    """
    json_path = Path(json_path)
    if json_path.suffix != ".json":
        raise ValueError(f"{json_path}: a record's path ends in .json")
    if json_path.exists() and not replace:
        raise FileExistsError(f"{json_path} exists; a finished {kind} is never overwritten")
    enc = _Encoder(backend)
    content = enc(record)
    token = secrets.token_hex(16)
    arrays = arrays_path(json_path)
    doc = {"format": f"xr0lab.dynreach.{kind}", "version": FORMAT_VERSION, "arrays": arrays.name,
           "token": token, "content": content}
    text = json.dumps(doc, allow_nan=False)
    meta = {"format": doc["format"], "token": token}
    if backend == "torch":
        import torch
        from safetensors.torch import save

        data = save({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                     for k, v in enc.arrays.items()}, metadata=meta)
    else:
        from safetensors.numpy import save

        data = save(enc.arrays, metadata=meta)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_arrays = arrays.with_name(arrays.name + ".tmp")
    tmp_json = json_path.with_name(json_path.name + ".tmp")
    _write_bytes(tmp_arrays, data)
    _write_bytes(tmp_json, text.encode())
    if replace:
        json_path.unlink(missing_ok=True)
    os.replace(tmp_arrays, arrays)
    os.replace(tmp_json, json_path)


def read_pair(json_path: Path | str, *, kind: str, backend: Backend) -> Any:
    """The record written by `write_pair` at `json_path`: strict (unknown tags, missing or
    unreferenced arrays, or a safetensors file from another write are errors)."""
    from safetensors import safe_open

    json_path = Path(json_path)
    try:
        doc = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_path} is not a DynReach {kind} file (expected the JSON that "
                         f"writes it, with its .safetensors arrays): {e}") from None
    fmt = f"xr0lab.dynreach.{kind}"
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{json_path} is not a DynReach {kind} file: format {got!r}, "
                         f"expected {fmt!r}")
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"{json_path}: format version {doc.get('version')!r}, this code reads "
                         f"version {FORMAT_VERSION}")
    arrays = arrays_path(json_path)
    if doc.get("arrays") != arrays.name:
        raise ValueError(f"{json_path} names arrays file {doc.get('arrays')!r}, expected "
                         f"{arrays.name!r} beside it")
    if not arrays.exists():
        raise FileNotFoundError(f"{json_path}: its arrays file {arrays} is missing")
    framework = "pt" if backend == "torch" else "np"
    with safe_open(str(arrays), framework=framework) as f:
        meta = f.metadata() or {}
        if meta.get("token") != doc.get("token"):
            raise ValueError(f"{arrays} was not written together with {json_path} (their tokens "
                             "differ); delete both files so the record is made again")
        loaded = {k: f.get_tensor(k) for k in f.keys()}
    dec = _Decoder(loaded, json_path)
    record = dec(doc.get("content"))
    unused = sorted(set(loaded) - dec.used)
    if unused:
        raise ValueError(f"{arrays} holds arrays {json_path.name} does not name: {unused[:5]}")
    return record


def remove_pair(json_path: Path | str) -> None:
    """Delete a record: its JSON first (so it stops counting as complete), then its arrays."""
    json_path = Path(json_path)
    json_path.unlink(missing_ok=True)
    arrays_path(json_path).unlink(missing_ok=True)


def identical(a: Any, b: Any) -> bool:
    """Exact equality of two records: same types, array dtypes and shapes, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (a.dtype == b.dtype and a.shape == b.shape
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and identical(np.asarray(a), np.asarray(b))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    torch = _torch()
    if torch is not None and isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
    return a == b
