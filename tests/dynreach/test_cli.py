"""`python -m xr0lab dynreach ...`: the subcommand's options reach `run_command` as plain values."""

from pathlib import Path

import pytest
import torch

from xr0lab.cli import main
from xr0lab.dynreach import sweep


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _fake_results(config, run_dir):
    return {"meta": {"cells": [f"{a}_seed{s}" for a in config.arms for s in config.seeds],
                     "run_dir": str(run_dir)},
            "primary": [{"metric": "ert", "a": "A3", "b": "A5", "condition": "S1|d=4 cup",
                         "mean": 1.5, "low": 0.5, "high": 2.5, "p_holm": 0.01}]}


def test_help_lists_the_commands_behind_the_committed_results(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dynreach", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: xr0lab dynreach" in text
    assert ("python -m xr0lab dynreach merge full --arms A3 A5 A6 A1 A0 A2 A4 A7 A5w1 A5w2 A5w8 \\"
            in text)
    for option in ("--arms", "--seeds", "--episodes", "--run-dir", "--train-from", "--out",
                   "--workers", "--threads", "--executor", "--address", "--no-progress"):
        assert option in text


def test_run_options_become_the_sweep_config(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run_sweep(config, *, run_dir, workers, threads, progress, out, executor, address):
        seen.update(config=config, run_dir=run_dir, workers=workers, threads=threads,
                    progress=progress, out=out, executor=executor, address=address)
        return _fake_results(config, run_dir)

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert main(["dynreach", "ci", "--arms", "A3", "A5", "--seeds", "1", "2", "--episodes", "5",
                 "--run-dir", str(tmp_path), "--train-from", "runs/dynreach/full",
                 "--no-progress"]) == 0
    config = seen["config"]
    assert config.name == "ci" and config.arms == ("A3", "A5") and config.seeds == (1, 2)
    assert config.eval.n_episodes == 5 and config.train_from == "runs/dynreach/full"
    assert seen["run_dir"] == tmp_path and seen["workers"] == 1 and seen["threads"] == 1
    assert seen["progress"] is False and seen["out"] is None
    assert seen["executor"] == "local" and seen["address"] is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dynreach ci: 4 cells, ")
    assert lines[0].endswith(f"-> {tmp_path / 'results.json'}")
    assert lines[1] == ("  primary ert A3 - A5 at S1|d=4 cup: +1.50 [+0.50, +2.50], "
                        "p_holm = 0.01")
    assert main(["dynreach", "ci", "--run-dir", str(tmp_path), "--executor", "ray",
                 "--address", "head:6379", "--workers", "3"]) == 0
    assert seen["executor"] == "ray" and seen["address"] == "head:6379"
    assert seen["workers"] == 3


def test_merge_reads_the_named_presets_run(monkeypatch, tmp_path):
    cell = sweep.cell_path(tmp_path, "A3", 0)   # a finished cell of both presets
    cell.parent.mkdir()
    cell.write_bytes(b"")
    calls = []
    monkeypatch.setattr(sweep, "backfill_moving_conflict",
                        lambda run_dir, config: calls.append(("backfill", run_dir, config.name)))
    monkeypatch.setattr(sweep, "merge_results",
                        lambda run_dir, config, threads: _fake_results(config, run_dir))
    monkeypatch.setattr(sweep, "write_json", lambda obj, path: calls.append(("write", path)))
    results, out = sweep.run_command("merge", "early", run_dir=tmp_path,
                                     out=tmp_path / "early.json")
    assert calls == [("backfill", tmp_path, "early"), ("write", tmp_path / "early.json")]
    assert out == tmp_path / "early.json" and results["meta"]["run_dir"] == str(tmp_path)
    _, out = sweep.run_command("merge", run_dir=tmp_path)
    assert out == Path(tmp_path) / "results.json" and calls[-2][2] == "full"


@pytest.mark.parametrize("argv, expected", [
    (["dynreach", "quick", "--workers", "0"], "argument --workers: expected an integer >= 1, got 0"),
    (["dynreach", "quick", "--threads", "x"], "argument --threads: expected an integer >= 1, got 'x'"),
    (["dynreach", "quick", "--seeds", "-1"], "argument --seeds: expected an integer >= 0, got -1"),
    (["dynreach", "bogus"], "argument mode: invalid choice: 'bogus' (choose from 'ci', 'quick', "
                            "'full', 'early', 'scenarios', 'merge')"),
    (["dynreach", "quick", "--arms", "A9"], "argument --arms: invalid choice: 'A9'"),
    (["dynreach", "merge", "nope"], "argument PRESET: invalid choice: 'nope'"),
    (["dynreach", "ci", "full"], "PRESET ('full') is for merge only, e.g. `xr0lab dynreach merge "
                                 "full`"),
    (["dynreach", "ci", "--executor", "dask"], "argument --executor: invalid choice: 'dask' "
                                               "(choose from 'local', 'ray')"),
    (["dynreach", "ci", "--address", "head:6379"], "--address ('head:6379') is the Ray cluster "
                                                   "to join, so it needs --executor ray"),
    (["notebook", "nope"], "argument NAME: invalid choice: 'nope' (choose from 'walkthrough', "
                           "'masks', 'flow', 'async', 'lambda', 'prefix', 'latency')"),
    (["notebook", "masks", "--cell-timeout", "0"], "argument --cell-timeout: expected an "
                                                   "integer >= 1, got 0"),
    (["hook-overhead", "--reps", "0"], "argument --reps: expected an integer >= 1, got 0"),
    (["profile", "--device", "nope"], "argument --device: expected a device such as cpu, cuda "
                                      "or cuda:1, got 'nope'"),
    (["profile", "--image-size", "100", "128"], "argument --image-size: expected a multiple of "
                                                "32 pixels, got 100"),
])
def test_bad_names_and_values_are_usage_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: xr0lab {argv[0]}") and expected in err
    assert "Traceback" not in err


def test_a_sweep_that_needs_an_earlier_run_says_so_without_a_traceback(tmp_path, capsys):
    assert main(["dynreach", "early", "--run-dir", str(tmp_path / "early"),
                 "--train-from", str(tmp_path / "full")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xr0lab dynreach early: error: train_from=")
    assert "Make it first: python -m xr0lab dynreach full --arms A3 A5 A6 A1 A0" in err
    assert main(["dynreach", "merge", "--run-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("xr0lab dynreach merge: error: nothing to merge")
