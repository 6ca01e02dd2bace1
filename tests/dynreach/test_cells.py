"""Cells on disk: JSON + safetensors, exact round trips, and no pickle is ever opened."""

import ast
import json
import math
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import xr0lab.dynreach
from xr0lab.dynreach import store
from xr0lab.dynreach.cells import (LegacyCellError, cell_path, convert_legacy_cells, load_cells,
                                   read_cell, write_cell)

PACKAGE = Path(xr0lab.dynreach.__file__).parent


def _cell() -> dict:
    """A cell shaped like `evaluate_arm`'s output plus the sweep's timing keys."""
    return {
        "conditions": {"S1|d=4": {
            "delay": 4, "jitter": False, "prefix_length": 4,
            "ert": np.array([1.5, np.nan, 3.25], np.float64),
            "success_cup": np.array([1.0, 0.0, 1.0], np.float32),
            "episode_seeds": np.array([7, 11, 2 ** 40], np.int64),
            "reached": np.array([[True, False], [False, True]]),
            "empty": np.zeros((0, 3), np.float32),
            "noise_keys": [(7, 0), (7, 1), (11, 0)],
            "noise_digests": ["a3f0", "9c1d"],
            "pooled": {"throughput": math.nan, "hi": math.inf, "lo": -math.inf, "zero": -0.0},
            "example": {"positions": np.arange(12, dtype=np.float32).reshape(2, 3, 2)},
        }},
        "attention": None,
        "cost": {"denoise_flops": 123456789012, "scale": np.float64(0.5),
                 "count": np.int64(3), "ok": np.bool_(True)},
        "shape": (2, 3),
        "arm": "A3", "seed": 0, "train_seconds": 1.25, "eval_seconds": 0.5,
        "stage_b_final_loss": None, "stage_b_wall_s": 2.0,
    }


def _same(a, b) -> None:
    """Exact equality, asserted leaf by leaf: types, dtypes, shapes, NaN where NaN was."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)   # NaN equals NaN here
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a == b
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                     == math.copysign(1, b))
    else:
        assert a == b


def test_a_cell_round_trips_exactly(tmp_path):
    path = cell_path(tmp_path, "A3", 0)
    assert path == tmp_path / "cells" / "A3_seed0.json" and not path.exists()
    cell = _cell()
    write_cell(path, cell)
    assert sorted(p.name for p in path.parent.iterdir()) == ["A3_seed0.json",
                                                             "A3_seed0.safetensors"]
    back = read_cell(path)
    _same(cell, back)
    c = back["conditions"]["S1|d=4"]
    assert c["noise_keys"] == [(7, 0), (7, 1), (11, 0)] and type(c["noise_keys"][0]) is tuple
    assert c["reached"].dtype == np.bool_ and c["reached"].shape == (2, 2)
    assert c["episode_seeds"][2] == 2 ** 40 and c["empty"].shape == (0, 3)
    assert back["cost"]["ok"].dtype == np.bool_ and back["cost"]["count"].dtype == np.int64
    assert math.isnan(c["pooled"]["throughput"]) and c["pooled"]["lo"] == -math.inf
    assert store.identical(cell, back)
    # Strict JSON on disk (no NaN literals), arrays only as references into the sibling file.
    text = path.read_text()
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON: {name}"))
    assert doc["arrays"] == "A3_seed0.safetensors" and doc["format"] == "xr0lab.dynreach.cell"
    assert doc["content"]["conditions"]["S1|d=4"]["ert"] == {"$array": "conditions.S1|d=4.ert"}
    assert doc["content"]["conditions"]["S1|d=4"]["pooled"]["throughput"] == {"$float": "nan"}
    assert doc["content"]["shape"] == {"$tuple": [2, 3]}
    # load_cells reads it back under (arm, seed), and only the config's cells.
    config = SimpleNamespace(arms=("A3", "A5"), seeds=(0, 1))
    loaded = load_cells(tmp_path, config)
    assert list(loaded) == [("A3", 0)]
    _same(cell, loaded[("A3", 0)])


def test_keys_that_are_not_plain_strings_round_trip(tmp_path):
    # "a.b" and a -> b would name the same array: the second gets a name of its own.
    cell = {0: "int key", (1, 2): [np.float32(1.5)], "$array": "not a tag",
            "a.b": np.zeros(1, np.uint8), "a": {"b": np.ones(2, np.float16)}}
    write_cell(tmp_path / "c.json", cell)
    back = read_cell(tmp_path / "c.json")
    _same(cell, back)
    assert list(back) == [0, (1, 2), "$array", "a.b", "a"]


def test_what_cannot_be_stored_is_named(tmp_path):
    path = tmp_path / "cells" / "A3_seed0.json"
    with pytest.raises(TypeError, match=r"conditions\.S1\|d=4\.bad: cannot store a "
                                        r"builtins\.set"):
        write_cell(path, {"conditions": {"S1|d=4": {"bad": {1, 2}}}})
    with pytest.raises(TypeError, match=r"labels: numpy dtype <U1 cannot be stored"):
        write_cell(path, {"labels": np.array(["a", "b"])})
    with pytest.raises(TypeError, match="a cell is a dict, got list"):
        write_cell(path, [1, 2])
    with pytest.raises(ValueError, match=r"a record's path ends in \.json"):
        write_cell(tmp_path / "cells" / "A3_seed0.pkl", {})
    assert not path.parent.exists() or not any(path.parent.iterdir())   # nothing half-written


def test_write_cell_never_overwrites_a_finished_cell(tmp_path):
    path = cell_path(tmp_path, "A1", 0)
    write_cell(path, {"x": np.array([1.0])})
    before = path.read_bytes(), path.with_suffix(".safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="A1_seed0.json exists; a finished cell is never "
                                              "overwritten"):
        write_cell(path, {"x": np.array([2.0])})
    assert (path.read_bytes(), path.with_suffix(".safetensors").read_bytes()) == before
    write_cell(path, {"x": np.array([2.0]), "more": 1}, replace=True)   # asked for explicitly
    _same(read_cell(path), {"x": np.array([2.0]), "more": 1})


def test_a_half_written_cell_is_not_finished(tmp_path, monkeypatch):
    path = cell_path(tmp_path, "A5", 0)
    real, calls = store.os.replace, []

    def dies_before_the_json(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).suffix == ".json":
            raise KeyboardInterrupt   # the worker is killed between the two renames
        real(src, dst)

    monkeypatch.setattr(store.os, "replace", dies_before_the_json)
    with pytest.raises(KeyboardInterrupt):
        write_cell(path, _cell())
    monkeypatch.undo()
    assert calls == ["A5_seed0.safetensors", "A5_seed0.json"]   # arrays first, JSON last
    assert path.with_suffix(".safetensors").exists() and not path.exists()
    assert not cell_path(tmp_path, "A5", 0).exists()               # the sweep redoes it
    assert load_cells(tmp_path, SimpleNamespace(arms=("A5",), seeds=(0,))) == {}
    write_cell(path, _cell())                                      # and may: no FileExistsError
    _same(read_cell(path), _cell())


def test_arrays_from_another_write_are_an_error(tmp_path):
    path = tmp_path / "c.json"
    write_cell(path, {"x": np.array([1.0])})
    old = path.with_suffix(".safetensors").read_bytes()
    write_cell(path, {"x": np.array([2.0])}, replace=True)
    path.with_suffix(".safetensors").write_bytes(old)   # a pair mixed from two writes
    with pytest.raises(ValueError, match="was not written together with .*c.json .*delete both"):
        read_cell(path)
    path.write_text("a finished cell")
    with pytest.raises(ValueError, match="is not a DynReach cell file"):
        read_cell(path)


class _Payload:
    """Unpickling this creates `marker`: proof that a pickle was opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _legacy(run_dir: Path, marker: Path, name: str = "A3_seed0") -> Path:
    path = run_dir / "cells" / f"{name}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"arm": "A3", "payload": _Payload(marker)}))
    return path


def test_the_payload_would_fire_if_unpickled(tmp_path):
    marker = tmp_path / "marker"
    pickle.loads(_legacy(tmp_path / "elsewhere", marker).read_bytes()).get("payload").close()
    assert marker.exists()   # so its absence below means nothing was unpickled


def test_a_legacy_pickled_cell_is_refused_not_opened(tmp_path):
    from xr0lab.dynreach import sweep

    run_dir, marker = tmp_path / "run", tmp_path / "marker"
    legacy = _legacy(run_dir, marker)
    expected = (r"1 pickled cell\(s\) of an earlier DynReach version: " + re.escape(str(legacy))
                + r"\. Pickles in a run directory are never opened .*cells\.convert_legacy_cells\("
                + re.escape(repr(str(run_dir))) + r", trust=True\)")
    with pytest.raises(LegacyCellError, match=expected):
        cell_path(run_dir, "A3", 0)
    with pytest.raises(LegacyCellError, match=expected):
        load_cells(run_dir, SimpleNamespace(arms=("A3",), seeds=(0,)))
    _legacy(run_dir, marker, "A9_seed4")   # any pickle in cells/ stops the merge
    with pytest.raises(LegacyCellError, match=r"2 pickled cell\(s\)"):
        load_cells(run_dir, SimpleNamespace(arms=("A1",), seeds=(0,)))
    with pytest.raises(LegacyCellError, match="never opened"):
        read_cell(legacy)
    with pytest.raises(LegacyCellError, match="never opened"):   # before any work is done
        sweep.run_command("merge", "ci", run_dir=run_dir, progress=False)
    assert not marker.exists() and legacy.exists()


def test_legacy_cells_convert_only_when_trusted(tmp_path):
    cell = _cell()
    legacy = tmp_path / "cells" / "A3_seed0.pkl"
    legacy.parent.mkdir()
    legacy.write_bytes(pickle.dumps(cell))
    with pytest.raises(TypeError, match="trust"):
        convert_legacy_cells(tmp_path)
    with pytest.raises(ValueError, match="pass trust=True only for a run directory you made"):
        convert_legacy_cells(tmp_path, trust=False)
    assert legacy.exists()
    assert convert_legacy_cells(tmp_path, trust=True) == [tmp_path / "cells" / "A3_seed0.json"]
    assert not legacy.exists()
    _same(cell, load_cells(tmp_path, SimpleNamespace(arms=("A3",), seeds=(0,)))[("A3", 0)])
    # A cell the format cannot hold stays a pickle, and nothing half-converted is left.
    legacy.write_bytes(pickle.dumps({"conditions": {"S1|d=4": {"bad": {1, 2}}}}))
    (tmp_path / "cells" / "A3_seed0.json").rename(tmp_path / "cells" / "kept.json")
    with pytest.raises(TypeError, match="cannot store a builtins.set"):
        convert_legacy_cells(tmp_path, trust=True)
    assert legacy.exists() and not (tmp_path / "cells" / "A3_seed0.json").exists()


def _sources() -> dict[Path, str]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "cells.py" in files and PACKAGE / "train.py" in files
    return {f: f.read_text() for f in files}


def test_no_source_in_the_package_loads_a_pickle():
    for path, text in _sources().items():
        for banned in ("torch.load", "pickle.load"):
            assert banned not in text, f"{path.relative_to(PACKAGE)} mentions {banned}"


def test_the_only_unpickling_is_the_explicit_conversion():
    """AST check: pickle/torch loaders are used in one place only, the opt-in
    `convert_legacy_cells`; no module imports them by name (writing a pickle is no risk)."""
    serialisers = {"load", "loads", "Unpickler"}
    uses = []
    for path, text in _sources().items():
        tree = ast.parse(text)
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "torch",
                                                                    "dill", "joblib"):
                bad = {a.name for a in node.names} & serialisers
                assert not bad, f"{path.name} imports {bad} from {node.module}"
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in ("pickle", "torch") and node.attr in serialisers):
                fn = node
                while fn in parents and not isinstance(fn, ast.FunctionDef):
                    fn = parents[fn]
                uses.append((path.name, getattr(fn, "name", None), f"{node.value.id}.{node.attr}"))
    assert uses == [("cells.py", "convert_legacy_cells", "pickle.Unpickler")]
