"""DynReach v2's study runner: the v2ci preset end to end, resume, the gate, the analysis."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from xr0lab.cli import main
from xr0lab.dynreach.cells import cell_path
from xr0lab.dynreach.study import (CONFIRM_SECONDARY, PRIMARY, COPY_MARGIN, Contrast,
                                   _holm_family, evaluate_contrast, pilot_verdict, power_seeds,
                                   study_preset)


@pytest.fixture(scope="module")
def v2ci(tmp_path_factory):
    run = tmp_path_factory.mktemp("v2ci")
    out = run / "results_copy.json"
    return run, out


def test_v2ci_runs_resumes_and_refuses_to_overwrite(v2ci, capsys):
    run, out = v2ci
    rc = main(["study", "v2ci", "--run-dir", str(run), "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "illustration" in text and "p =" not in text
    cfg = study_preset("v2ci")
    for arm in cfg.arms:
        assert cell_path(run, arm, 0).exists()
        assert cell_path(run, arm, 0).suffix == ".json"
    assert not list(run.rglob("*.pkl")) and not list(run.rglob("*.pt"))
    res = json.loads(out.read_text())
    assert res["meta"]["one_seed"] is True
    assert res["meta"]["band_table"]["d=3"]["w=4"] == 13
    # The gate: checked every 20 steps up to the stated maximum (40); every check recorded.
    gate = res["stage_a"]["0"]["gate"]
    assert [g["step"] for g in gate][:1] == [20]
    assert res["stage_a"]["0"]["steps"] in (20, 40)
    # Every cell carries the oracle's floor on the same episodes: ERT of the oracle is 0.
    cond = res["per_seed"]["A3"]["0"]["S1M|d=3"]
    assert cond["oracle_success_cup"] == 1.0
    # Resume: nothing is recomputed, finished cells are left byte for byte.
    before = {a: cell_path(run, a, 0).read_bytes() for a in cfg.arms}
    rc = main(["study", "v2ci", "--run-dir", str(run), "--no-progress"])
    assert rc == 0
    assert {a: cell_path(run, a, 0).read_bytes() for a in cfg.arms} == before
    # An existing --out is never replaced silently.
    rc = main(["study", "v2ci", "--run-dir", str(run), "--out", str(out), "--no-progress"])
    assert rc != 0
    assert "exists and is left as it is" in capsys.readouterr().err


def test_study_rejects_a_changed_configuration(v2ci, capsys):
    from xr0lab.dynreach.study import run_study
    from xr0lab.dynreach.sweep import RunDirMismatch

    run, _ = v2ci
    if not (run / "config.json").exists():
        pytest.skip("needs the end-to-end test's run directory")
    cfg = study_preset("v2ci")
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stage_b_steps=21))
    with pytest.raises(RunDirMismatch, match="stage_b_steps: 20 there, 21 here"):
        run_study(other, run_dir=run, progress=False)


def test_study_cli_usage_errors():
    with pytest.raises(SystemExit) as e:
        main(["study", "v2ci", "--address", "h:1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["study", "nope"])
    assert e.value.code == 2


def test_power_seeds_matches_the_textbook_value():
    # Paired t, two-sided alpha 0.05, d_z = 0.5, 80% power: 34 pairs (standard tables).
    d = np.array([0.5 + x for x in (-1, 1)] * 10)          # mean 0.5, sd ~1.026
    d = (d - d.mean()) / d.std(ddof=1) + 0.5               # exactly mean 0.5, sd 1
    out = power_seeds(d, alpha=0.05, floor=2)
    assert out["effect_dz"] == pytest.approx(0.5)
    assert out["n_needed"] == 34
    big = power_seeds(np.array([3.0, 3.1, 2.9, 3.05]))
    assert big["n_planned"] == 10                           # never fewer than 10
    assert power_seeds(np.array([1.0]))["effect_dz"] is None


def _table(per_seed: dict) -> dict:
    """A results dict from {arm: {seed: {condition: {metric: value}}}}."""
    seeds = sorted({int(s) for rows in per_seed.values() for s in rows})
    return {"per_seed": per_seed, "meta": {"seeds": seeds}}


def test_pilot_verdict_follows_its_rule():
    margin = COPY_MARGIN
    rows = {s: {"conflict": {"copy_fraction_late": 0.30 + 0.01 * s,
                             "oracle_copy_fraction_late": 0.0,
                             "C_late": 0.2, "oracle_C_late": 0.19}} for s in range(3)}
    res = _table({"A3": {str(s): r for s, r in rows.items()}})
    v = pilot_verdict(res, arms=("A3",))
    assert v["a3_copies"] and v["arms"]["A3"]["copy_fraction_late"]["copies"]
    assert not v["arms"]["A3"]["C_late"]["copies"]          # 0.01 < margin
    rows[1]["conflict"]["copy_fraction_late"] = margin / 2  # one seed below the margin
    v = pilot_verdict(_table({"A3": {str(s): r for s, r in rows.items()}}), arms=("A3",))
    assert not v["a3_copies"]


def test_contrasts_are_seed_level_with_holm_and_the_sign_flip_floor():
    assert len(CONFIRM_SECONDARY) == 12 and len(PRIMARY) == 2
    rng = np.random.default_rng(0)
    per = {"A3": {}, "A5": {}}
    for s in range(10):
        base = 0.6 + 0.05 * rng.standard_normal()
        per["A3"][str(s)] = {"S1M|d=3": {"success_cup": base, "ert": 5.0}}
        per["A5"][str(s)] = {"S1M|d=3": {"success_cup": base + 0.1 + 0.01 * s,
                                         "ert": 5.0 + (0.5 if s % 2 else -0.5)}}
    res = _table(per)
    seeds = res["meta"]["seeds"]
    tested = _holm_family([evaluate_contrast(res["per_seed"], c, seeds) for c in PRIMARY])
    succ, ert = tested
    assert succ["n_seeds"] == 10 and succ["mean"] == pytest.approx(0.145)
    assert succ["p_sign_flip"] == pytest.approx(2.0 ** -9)      # every difference positive
    assert succ["p_floor"] == pytest.approx(2.0 ** -9)
    assert ert["p_sign_flip"] == pytest.approx(1.0)             # five up, five down
    assert succ["p_holm"] == pytest.approx(2 * 2.0 ** -9) and succ["reject"]
    assert not ert["reject"]
    # A contrast whose arm is missing is reported with no seeds, not tested.
    missing = evaluate_contrast(res["per_seed"], Contrast("x", "A6", "A3", "S1M|d=3",
                                                          "success_cup"), seeds)
    assert missing["n"] == 0 and "p_sign_flip" not in missing


def _pilot(planned: int) -> dict:
    return {"verdict": {
        "rule": "excess > 0.05", "a3_copies": True, "seeds_planned": planned,
        "arms": {"A3": {"copies": True,
                        "copy_fraction_late": {"mean_excess": 0.1, "excess": [0.1, 0.12]},
                        "C_late": {"mean_excess": -0.1, "excess": [-0.1, -0.09]}}},
        "power": {"primary": {"effect_dz": 0.8, "n_needed": 9, "n_planned": planned}}}}


def test_protocol_renders_from_the_pilot_and_is_never_rewritten(tmp_path):
    from xr0lab.dynreach.protocol import render_protocol, write_protocol

    text = render_protocol(_pilot(10))
    assert "1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009" in text
    assert "(floor\n2^(1-n) = 0.001953)" in text
    assert "12. A5 - A3 ERT, S1M d=6 (`S1M|d=6`, `ert`)" in text
    assert "d = 3: 13" in text and "A3 copies: **yes**" in text
    with pytest.raises(ValueError, match="plans 14 seeds but the confirm preset has 10"):
        render_protocol(_pilot(14))
    path = write_protocol(_pilot(10), tmp_path / "protocol.md")
    with pytest.raises(FileExistsError, match="never rewritten"):
        write_protocol(_pilot(10), path)


def test_committed_cells_are_adopted_published_and_never_replaced(v2ci, tmp_path):
    from xr0lab.dynreach.study import adopt_cells, publish_cells, run_study
    from xr0lab.dynreach.sweep import RunDirMismatch

    run, _ = v2ci
    if not (run / "config.json").exists():
        pytest.skip("needs the end-to-end test's run directory")
    cfg = study_preset("v2ci")
    committed = tmp_path / "committed"
    assert publish_cells(run, committed) == [f"{a}_seed0" for a in sorted(cfg.arms)]
    assert publish_cells(run, committed) == []           # already there: nothing replaced
    # A fresh checkout resumes from the committed cells: nothing is trained or recomputed.
    fresh = tmp_path / "fresh"
    run_study(cfg, run_dir=fresh, progress=False, order="seed", cells_dir=committed)
    for a in cfg.arms:
        assert cell_path(fresh, a, 0).read_bytes() == cell_path(run, a, 0).read_bytes()
    assert not (fresh / "seed0").exists()                 # no stage A ran
    # A cell the run directory holds is kept, not replaced by the committed one.
    mark = cell_path(fresh, "A1", 0)
    mark.write_text(mark.read_text().replace('"arm"', '"arm" ', 1))
    assert adopt_cells(committed, fresh) == []
    assert '"arm" ' in mark.read_text()
    # Cells of another configuration are refused before anything is copied.
    other = tmp_path / "other"
    other.mkdir()
    theirs = json.loads((committed / "config.json").read_text())
    theirs["train"]["stage_b_steps"] = 999
    (other / "config.json").write_text(json.dumps(theirs))
    (other / "A9_seed0.json").write_text("{}")
    with pytest.raises(RunDirMismatch, match="stage_b_steps"):
        adopt_cells(other, fresh)
    assert not (fresh / "cells" / "A9_seed0.json").exists()


def test_seed_order_takes_whole_seeds_in_turn():
    from xr0lab.dynreach.study import plan_groups

    cfg = study_preset("confirm")
    todo = [c for c in cfg.cells() if c != ("A3", 1000)]
    groups = plan_groups(todo, cfg.seeds, "seed", max_cells=10)
    assert [g[0][1] for g in groups] == [1000, 1001]
    assert groups[0] == [("A5", 1000), ("A1", 1000), ("A6", 1000), ("A7", 1000),
                         ("A3replan", 1000), ("A0", 1000), ("A2", 1000), ("A4", 1000)]
    assert groups[1] == [("A3", 1001), ("A5", 1001)]
    # A0, A2 and A4 stay on their first 5 seeds whatever the order.
    everything = plan_groups(todo, cfg.seeds, "seed")
    assert ("A0", 1005) not in [c for g in everything for c in g]
    assert sum(len(g) for g in everything) == len(todo) == 74
    assert plan_groups(todo, cfg.seeds, "arm") == [todo]
    with pytest.raises(ValueError, match="order must be"):
        plan_groups(todo, cfg.seeds, "random")
