"""The merge's comparison families take their arms from the declared pairs, not from literals."""

from types import SimpleNamespace

import numpy as np
import pytest

from xr0lab.dynreach.arms import PRIMARY_PAIRS, REFERENCE_ARM
from xr0lab.dynreach.merge import primary_family, secondary_family, secondary_tests


def test_reference_arm_is_the_first_of_every_primary_pair():
    assert PRIMARY_PAIRS == (("A3", "A5"), ("A3", "A6")) and REFERENCE_ARM == "A3"


def test_secondary_family_skips_the_primary_endpoint():
    conditions = {"A1": {"S1|d=4": {}}, "A3": {"S1|d=0": {}, "S1|d=4": {}},
                  "A5": {"S1|d=0": {}, "S1|d=4": {}}}
    assert secondary_tests(["A1", "A3", "A5"], conditions) == [
        ("A1", "S1|d=4", "ert"), ("A1", "S1|d=4", "success_cup"), ("A1", "S1|d=4", "spill_cup"),
        ("A5", "S1|d=0", "ert"), ("A5", "S1|d=0", "success_cup"), ("A5", "S1|d=0", "spill_cup"),
        ("A5", "S1|d=4", "success_cup"), ("A5", "S1|d=4", "spill_cup")]
    assert secondary_tests(["A1", "A5"], conditions) == []   # no reference arm, no family


def test_families_on_synthetic_cells():
    rng = np.random.default_rng(0)
    base = {s: rng.normal(size=40) for s in (0, 1)}
    shift = {"A3": 1.0, "A5": 0.0, "A6": 1.0}

    def cell(arm, s):
        v = base[s] + shift[arm]
        return {"conditions": {"S1|d=4": {"ert": v, "success_cup": v, "spill_cup": v}}}

    cells = {(a, s): cell(a, s) for a in shift for s in (0, 1)}
    config = SimpleNamespace(seeds=(0, 1), n_boot=100)
    conditions = {a: {"S1|d=4": {}} for a in shift}
    primary = primary_family(cells, list(shift), conditions, config)
    assert [(r["a"], r["b"], r["condition"], r["metric"]) for r in primary] == [
        ("A3", "A5", "S1|d=4 cup", "ert"), ("A3", "A6", "S1|d=4 cup", "ert")]
    assert primary[0]["mean"] == pytest.approx(1.0) and primary[1]["mean"] == pytest.approx(0.0)
    assert primary[0]["p_holm"] < 0.05 < primary[1]["p_holm"]
    secondary, n_boot = secondary_family(cells, list(shift), conditions, config)
    assert {r["a"] for r in secondary} == {"A3"} and n_boot == max(100, 40 * len(secondary))
    assert [(r["b"], r["metric"]) for r in secondary] == [
        ("A5", "success_cup"), ("A5", "spill_cup"), ("A6", "success_cup"), ("A6", "spill_cup")]
