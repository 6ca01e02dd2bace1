"""Reading merged DynReach results: the committed file and the accessors figures and findings share.

A results dict is what `xr0lab.dynreach.merge.merge_results` returns (and the committed
`data/dynreach_results.json` / `data/dynreach_early.json` hold): "conditions" maps arm ->
"<scenario>|d=<d>" / "<scenario>|jitter=<d>" -> metric -> {"mean", "low", "high", ...}, next to
the per-arm "conflict", "attention", "cost" and "examples" summaries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from xr0lab.dynreach.arms import ARMS


def load_results(path: Path | str | None = None) -> dict | None:
    """The committed full-sweep results (data/dynreach_results.json) if present, else None."""
    from xr0lab.workspace.paths import data_dir

    path = Path(path) if path else data_dir() / "dynreach_results.json"
    return json.loads(path.read_text()) if path.exists() else None


def present(results: dict, arms: Sequence[str]) -> list[str]:
    return [a for a in arms if a in results["conditions"]]


def delay_rows(results: dict, arm: str, scenario: str = "S1") -> list[tuple[int, dict]]:
    """(d, entry) for the constant-delay rows of an arm, sorted by d."""
    rows = [(e["delay"], e) for k, e in results["conditions"][arm].items()
            if k.startswith(f"{scenario}|d=")]
    return sorted(rows, key=lambda r: r[0])


def value(results: dict, arm: str, cond: str, metric: str, part: str = "mean"):
    e = results["conditions"].get(arm, {}).get(cond)
    if e is None or metric not in e:
        return None
    return e[metric][part]


def scenarios_in(results: dict) -> list[str]:
    """The scenarios evaluated in a results dict, in S1..S4 order."""
    found = {k.split("|", 1)[0] for conds in results["conditions"].values() for k in conds}
    return sorted(found)


def window_arms(results: dict) -> list[tuple[int, str]]:
    """(w, arm id) of the Λ-band arms present, sorted by w (A5 is the band at w = 4)."""
    out = [(ARMS[a].window, a) for a in results["conditions"]
           if a in ARMS and ARMS[a].attention == "band" and ARMS[a].runtime == "prefix"
           and not ARMS[a].rope_offset and not ARMS[a].prefix_hiding]
    return sorted(set(out))


def late_copy(cf: dict | None, late_from: int = 8) -> float | None:
    """Mean C(k) over k >= late_from, or None where C is missing."""
    vals = [v for v in ((cf or {}).get("C") or [])[late_from:] if v is not None]
    return float(np.mean(vals)) if vals else None
