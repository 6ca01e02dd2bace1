"""The sweep's cells on disk: one pickled result per (arm, training seed).

A cell holds everything `evaluate_arm` returned for one trained arm (per-episode arrays stay
numpy), plus its timings. Cells are written atomically, so a killed worker never leaves a
half-written one and a resumed sweep can trust every file it finds.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xr0lab.dynreach.sweep import SweepConfig


def cell_path(run_dir: Path | str, arm: str, seed: int) -> Path:
    return Path(run_dir) / "cells" / f"{arm}_seed{seed}.pkl"


def write_cell(path: Path, cell: dict) -> None:
    """Pickle one cell atomically (a killed worker never leaves a half-written cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(cell, f)
    os.replace(tmp, path)



def load_cells(run_dir: Path | str, config: SweepConfig) -> dict[tuple[str, int], dict]:
    cells = {}
    for a in config.arms:
        for s in config.seeds:
            path = cell_path(run_dir, a, s)
            if path.exists():
                with open(path, "rb") as f:
                    cells[(a, s)] = pickle.load(f)
    return cells
