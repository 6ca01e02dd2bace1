"""What a sweep checks before it runs: a run directory of other settings is an error that names
them and leaves the directory alone; missing earlier runs say which command makes them."""

import dataclasses
import json

import pytest

from xr0lab.dynreach.cells import cell_path
from xr0lab.dynreach.sweep import (MissingRunError, RunDirMismatch, SweepConfig, run_command,
                                   run_sweep, sweep_preset)


def _config(**changes):
    return dataclasses.replace(SweepConfig("test", ("A1", "A3"), (0,), n_boot=50), **changes)


def test_a_run_dir_of_other_settings_is_an_error_and_is_left_alone(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mine = _config()
    (run_dir / "config.json").write_text(json.dumps(mine.to_dict()))
    cell = cell_path(run_dir, "A1", 0)
    cell.parent.mkdir()
    cell.write_bytes(b"a finished cell")
    before = (run_dir / "config.json").read_text()
    other = _config(n_boot=51, eval=dataclasses.replace(mine.eval, n_episodes=7))
    with pytest.raises(RunDirMismatch) as info:
        run_sweep(other, run_dir=run_dir, progress=False)
    message = str(info.value)
    assert "holds a different sweep configuration (nothing was changed)" in message
    assert f"  eval.n_episodes: {mine.eval.n_episodes} there, 7 here\n" in message
    assert "  n_boot: 50 there, 51 here\n" in message
    assert "another run directory (--run-dir, run_sweep(run_dir=...))" in message
    assert cell.read_bytes() == b"a finished cell"
    assert (run_dir / "config.json").read_text() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["cells", "config.json"]


def test_early_without_the_full_run_names_the_commands_that_make_it(tmp_path):
    early = dataclasses.replace(sweep_preset("early"), train_from=str(tmp_path / "full"))
    with pytest.raises(MissingRunError) as info:
        run_sweep(early, run_dir=tmp_path / "early", progress=False)
    message = str(info.value)
    assert f"there is no sweep at {tmp_path / 'full'} (no config.json)" in message
    assert ("Make it first: python -m xr0lab dynreach full --arms A3 A5 A6 A1 A0 --seeds "
            "0 1 2 3 4 && python -m xr0lab dynreach full --arms A2 A4 A7 A5w1 A5w2 A5w8 "
            "--seeds 0 1 2") in message
    assert not (tmp_path / "early").exists()   # nothing was created for a sweep that cannot run


def test_missing_checkpoints_of_the_source_run_are_listed(tmp_path):
    full = dataclasses.replace(sweep_preset("full"), arms=("A3", "A2"), seeds=(0, 3))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text(json.dumps(full.to_dict()))
    early = dataclasses.replace(sweep_preset("early"), arms=("A2",), seeds=(3,),
                                train_from=str(tmp_path / "full"))
    with pytest.raises(MissingRunError, match=r"has no stage-B checkpoint for 1 \(arm, seed\) "
                                              r"pair\(s\): A2 seed 3\. Train them first \(python "
                                              r"-m xr0lab dynreach full --arms A2 --seeds 3\)"):
        run_sweep(early, run_dir=tmp_path / "early", progress=False)


def test_merging_nothing_says_what_to_run(tmp_path):
    with pytest.raises(MissingRunError, match=r"nothing to merge: .* has no finished cells of "
                                              r"the 'early' sweep's arms and seeds\. Make them "
                                              r"first: python -m xr0lab dynreach early"):
        run_command("merge", "early", run_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
