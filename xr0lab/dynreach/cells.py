"""The sweep's cells on disk: one record per (arm, training seed), never a pickle.

A cell holds everything `evaluate_arm` returned for one trained arm (per-episode arrays stay
numpy), plus its timings. It is stored as `cells/<arm>_seed<S>.json` (the structure) and
`cells/<arm>_seed<S>.safetensors` (its arrays, exact dtype and shape), in the format of `store`:
nothing in a run directory is ever unpickled, so a run directory from anywhere is safe to open.

Cells are written atomically (the JSON last), so a killed worker never leaves a cell that counts
as finished, and a resumed sweep can trust every cell it finds. A finished cell is never
overwritten by accident: `write_cell` refuses unless told `replace=True` (the merge's backfill).

Cells of earlier versions were pickles (`<arm>_seed<S>.pkl`). Those are refused with
`LegacyCellError`, never opened; `convert_legacy_cells(run_dir, trust=True)` converts the cells of
a run directory its owner made and trusts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from xr0lab.dynreach.store import identical, read_pair, remove_pair, write_pair

if TYPE_CHECKING:
    from xr0lab.dynreach.sweep import SweepConfig

_NAME = re.compile(r"^(?P<arm>.+)_seed(?P<seed>-?\d+)$")


class LegacyCellError(RuntimeError):
    """A run directory holds pickled cells of an earlier version; they are never opened."""


def _legacy_message(pickles: list[Path], run_dir: Path) -> str:
    shown = ", ".join(str(p) for p in pickles[:3]) + (" ..." if len(pickles) > 3 else "")
    return (f"{len(pickles)} pickled cell(s) of an earlier DynReach version: {shown}. Pickles "
            "in a run directory are never opened (unpickling runs whatever code the file names). "
            "If you made this run directory yourself and trust it, convert its cells once with "
            f"xr0lab.dynreach.cells.convert_legacy_cells({str(run_dir)!r}, trust=True); "
            "otherwise delete the .pkl files and the sweep recomputes those cells.")


def _cell_json(run_dir: Path | str, arm: str, seed: int) -> Path:
    return Path(run_dir) / "cells" / f"{arm}_seed{seed}.json"


def cell_path(run_dir: Path | str, arm: str, seed: int) -> Path:
    """The cell's JSON, whose existence means the cell is finished. A pickled cell of an
    earlier version in its place is an error (`LegacyCellError`), so a sweep over such a
    directory stops before doing any work rather than recompute or misread it."""
    path = _cell_json(run_dir, arm, seed)
    legacy = path.with_suffix(".pkl")
    if legacy.exists():
        raise LegacyCellError(_legacy_message([legacy], Path(run_dir)))
    return path


def write_cell(path: Path, cell: dict, *, replace: bool = False) -> None:
    """Write one cell atomically (its arrays first, its JSON last). An existing cell raises
    FileExistsError unless `replace=True`."""
    if not isinstance(cell, dict):
        raise TypeError(f"{path}: a cell is a dict, got {type(cell).__name__}")
    write_pair(path, cell, kind="cell", backend="numpy", replace=replace)


def read_cell(path: Path | str) -> dict:
    """One cell as `write_cell` was given it (numpy arrays, tuples and NaN included)."""
    path = Path(path)
    if path.suffix == ".pkl":
        raise LegacyCellError(_legacy_message([path], path.parent.parent))
    return read_pair(path, kind="cell", backend="numpy")


def load_cells(run_dir: Path | str, config: SweepConfig) -> dict[tuple[str, int], dict]:
    """{(arm, seed): cell} of every finished cell of the config's arms and seeds. A run
    directory holding pickled cells is refused (`LegacyCellError`) before anything is read."""
    pickles = sorted((Path(run_dir) / "cells").glob("*.pkl"))
    if pickles:
        raise LegacyCellError(_legacy_message(pickles, Path(run_dir)))
    cells = {}
    for a in config.arms:
        for s in config.seeds:
            path = cell_path(run_dir, a, s)
            if path.exists():
                cells[(a, s)] = read_cell(path)
    return cells


def convert_legacy_cells(run_dir: Path | str, *, trust: bool) -> list[Path]:
    """Convert the pickled cells of `run_dir` to JSON + safetensors; returns the cells written.

    This unpickles, which runs whatever code a pickle names: call it only with `trust=True`, for
    a run directory you made yourself. Each converted cell is read back and compared exactly with
    the pickle's contents before the pickle is deleted; a cell that cannot be stored faithfully is
    an error and its pickle stays.
    """
    if trust is not True:
        raise ValueError("convert_legacy_cells unpickles the .pkl cells, which runs any code they "
                         "hold; pass trust=True only for a run directory you made yourself")
    import pickle

    written = []
    for legacy in sorted((Path(run_dir) / "cells").glob("*.pkl")):
        if not _NAME.match(legacy.stem):
            raise ValueError(f"{legacy}: not a cell name (expected <arm>_seed<S>.pkl)")
        with open(legacy, "rb") as f:
            cell = pickle.Unpickler(f).load()   # the one unpickling site; trusted by the caller
        path = legacy.with_suffix(".json")
        if path.exists():   # an earlier conversion stopped before deleting the pickle
            if not identical(read_cell(path), cell):
                raise FileExistsError(f"{path} exists and differs from {legacy}; keep one of them")
        else:
            write_cell(path, cell)
            if not identical(read_cell(path), cell):
                remove_pair(path)
                raise ValueError(f"{legacy} does not round-trip exactly through JSON + "
                                 "safetensors; it was left as it is")
            written.append(path)
        legacy.unlink()
    return written
