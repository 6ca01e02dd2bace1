"""DynReach phase 2: arms, staged training, evaluation through the executor, the sweep.

Everything runs a handful of steps on a 2-layer, 32-wide model so the module stays well under a
minute on one thread.
"""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open

from xr0lab.dynreach.arms import ARMS, get_arm
from xr0lab.dynreach.cells import cell_path, load_cells
from xr0lab.dynreach.evaluate import (EvalSettings, cycle_noise, evaluate_arm, executor_config,
                                      noise_digest, reaction_lag)
from xr0lab.dynreach.merge import _crn_check
from xr0lab.dynreach.policies import Tier0Config
from xr0lab.dynreach.probe import linear_probe
from xr0lab.dynreach.sweep import SweepConfig, run_sweep
from xr0lab.dynreach.train import (LegacyCheckpointError, TrainSettings, load_policy,
                                   load_stage_a, read_checkpoint, stage_b_path, train_stage_a,
                                   train_stage_b, write_checkpoint)
from xr0lab.workspace.threads import set_threads

SMALL = Tier0Config(encoder_width=32, dit_layers=2, dit_width=32, head_dim=16, kv_heads=2,
                    num_steps=2)
TRAIN = TrainSettings(train_episodes=6, stage_a_steps=4, stage_b_steps=2, batch_size=8,
                      stage_b_cache=64, checkpoint_every=2, probe_samples=64, warmup=2)
EVAL = EvalSettings(delays=(4,), jitter_delay=4, n_episodes=4, conflict_episodes=4,
                    attention_episodes=2)
SPEC_ARMS = ("A0", "A1", "A2", "A3", "A4", "A5", "A6", "A7")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    set_threads(1)
    yield
    torch.set_num_threads(before)


def test_arms_differ_only_in_named_knobs():
    a3 = ARMS["A3"]
    assert ARMS["A5"].attention == "band" and ARMS["A5"].window == 4
    assert ARMS["A6"].attention == "hard_block" and ARMS["A6"].window == 4
    assert ARMS["A4"].attention == "causal"
    a7 = ARMS["A7"]
    assert (a7.rope_offset, a7.prefix_hiding, a7.reweight) == (10, True, True)
    for arm in ("A4", "A5", "A6"):
        same = {f.name for f in dataclasses.fields(a3)
                if getattr(a3, f.name) == getattr(ARMS[arm], f.name)}
        assert {"runtime", "train_prefix", "rope_offset", "prefix_hiding", "reweight",
                "prefix_schedule"} <= same
    # A0-A2 share one stage-B checkpoint: they differ only at run time.
    assert len({ARMS[a].training_key for a in ("A0", "A1", "A2")}) == 1
    assert ARMS["A3"].training_key != ARMS["A3paper"].training_key
    with pytest.raises(KeyError, match="unknown v1 arm"):
        get_arm("A9")


def test_executor_timing_per_arm():
    assert executor_config(ARMS["A0"], 4).strategy == "sync"
    assert executor_config(ARMS["A3"], 4).prefix_length == 4
    assert executor_config(ARMS["A3"], 0).prefix_length == 1
    assert executor_config(ARMS["A3"], 4, jitter=True).prefix_length == 5
    assert executor_config(ARMS["A2"], 4).strategy == "guided"


def test_end_to_end_every_arm(tmp_path):
    train_stage_a(tmp_path, 0, SMALL, TRAIN, progress=False)
    for arm_id in SPEC_ARMS:
        arm = get_arm(arm_id)
        train_stage_b(tmp_path, 0, arm, SMALL, TRAIN, progress=False)
        model, _ = load_policy(tmp_path, 0, arm, SMALL)
        out = evaluate_arm(model, arm, EVAL, progress=False)
        c = out["conditions"]["S1|d=4"]
        assert c["success_cup"].shape == (4,) and np.isfinite(c["ert"]).all()
        assert "S1|jitter=4" in out["conditions"]
        assert out["cost"]["denoise_flops"] > 0
        if arm.runtime == "prefix":
            assert len(out["attention"]["prefix_mass_late"]) == SMALL.dit_layers
            assert np.isnan(out["conflict"]["C"][:4]).all()


def test_stage_b_freezes_encoder(tmp_path):
    train_stage_a(tmp_path, 0, SMALL, TRAIN, progress=False)
    train_stage_b(tmp_path, 0, ARMS["A3"], SMALL, TRAIN, progress=False)
    stage_a = read_checkpoint(tmp_path / "seed0" / "stage_a.json")["model"]
    model, _ = load_policy(tmp_path, 0, ARMS["A3"], SMALL)
    enc = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    assert all(torch.equal(v, stage_a[k]) for k, v in enc.items())
    assert not all(torch.equal(v, stage_a[k]) for k, v in model.state_dict().items()
                   if k.startswith("expert.dit."))


class _Killed(RuntimeError):
    pass


def test_stage_a_resume_matches_uninterrupted(tmp_path):
    from xr0lab.dynreach.train import dataset

    data = dataset(TRAIN, 0)
    train_stage_a(tmp_path / "straight", 0, SMALL, TRAIN, progress=False, data=data)

    class Dying:
        """Dataset proxy that dies on the 4th batch (after the step-2 checkpoint)."""
        calls = 0

        def __getattr__(self, name):
            return getattr(data, name)

        def __len__(self):
            return len(data)

        def batch(self, *a, **k):
            Dying.calls += 1
            if Dying.calls == 4:
                raise _Killed()
            return data.batch(*a, **k)

    with pytest.raises(_Killed):
        train_stage_a(tmp_path / "killed", 0, SMALL, TRAIN, progress=False, data=Dying())
    killed = tmp_path / "killed" / "seed0"
    assert sorted(p.name for p in killed.iterdir()) == ["stage_a.partial.json",
                                                       "stage_a.partial.safetensors"]
    # The partial checkpoint holds the AdamW state as named tensors, its hyperparameters in JSON.
    partial = read_checkpoint(killed / "stage_a.partial.json")
    assert partial["step"] == 2 and len(partial["losses"]) == 2
    assert set(partial["opt"]["state"][3]) == {"step", "exp_avg", "exp_avg_sq"}
    assert partial["opt"]["param_groups"][0]["betas"] == (0.9, 0.95)
    with safe_open(str(killed / "stage_a.partial.safetensors"), "pt") as f:
        names = set(f.keys())
    n_params = len(partial["opt"]["state"])
    assert names == ({f"model.{k}" for k in partial["model"]}
                     | {f"opt.state.{i}.{t}" for i in range(n_params)
                        for t in ("step", "exp_avg", "exp_avg_sq")})
    assert n_params == len(partial["model"]) > 3   # stage A trains every parameter
    train_stage_a(tmp_path / "killed", 0, SMALL, TRAIN, progress=False, data=data)
    assert sorted(p.name for p in killed.iterdir()) == ["stage_a.json", "stage_a.safetensors"]
    a = read_checkpoint(tmp_path / "straight" / "seed0" / "stage_a.json")
    b = read_checkpoint(killed / "stage_a.json")
    assert a["losses"] == b["losses"]      # bit-identical: the same batches, noise and state
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_checkpoints_are_safetensors_and_json_read_strictly(tmp_path):
    train_stage_a(tmp_path, 0, SMALL, TRAIN, progress=False)
    arm = ARMS["A3"]
    train_stage_b(tmp_path, 0, arm, SMALL, TRAIN, progress=False)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    key = arm.training_key
    assert files == ["seed0", "seed0/stage_a.json", "seed0/stage_a.safetensors",
                     f"seed0/stage_b_{key}.json", f"seed0/stage_b_{key}.safetensors"]
    assert stage_b_path(tmp_path, 0, arm) == tmp_path / "seed0" / f"stage_b_{key}.json"
    model, ck = load_policy(tmp_path, 0, arm, SMALL)
    assert set(ck) == {"model", "config", "arm", "losses", "wall_s", "seed"}
    assert ck["config"] == dataclasses.asdict(SMALL) and ck["arm"] == dataclasses.asdict(arm)
    assert ck["seed"] == 0 and len(ck["losses"]) == TRAIN.stage_b_steps and ck["wall_s"] > 0
    _, ck_a = load_stage_a(tmp_path, 0, SMALL)
    assert {"model", "config", "settings", "losses", "wall_s", "probe", "seed"} <= set(ck_a)
    assert ck_a["settings"] == dataclasses.asdict(TRAIN)       # tuples come back as tuples
    assert isinstance(ck_a["probe"]["r2"], float) and len(ck_a["losses"]) == TRAIN.stage_a_steps
    # Strict: a checkpoint missing a weight is refused, not half-loaded.
    path = tmp_path / "seed0" / "stage_a.json"
    ck_a["model"].pop(next(iter(ck_a["model"])))
    write_checkpoint(path, ck_a, replace=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_stage_a(tmp_path, 0, SMALL)
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_checkpoint(path, ck_a)


class _Marker:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_legacy_torch_checkpoint_is_refused_not_opened(tmp_path):
    import pickle

    marker = tmp_path / "marker"
    run = tmp_path / "run"
    (run / "seed0").mkdir(parents=True)
    legacy = run / "seed0" / "stage_a.pt"
    legacy.write_bytes(pickle.dumps({"model": _Marker(marker)}))
    message = (f"{legacy} is a checkpoint of an earlier DynReach version (torch.save, a pickle); "
               "run directories are never unpickled. Delete it and the run trains it again")
    with pytest.raises(LegacyCheckpointError, match=re.escape(message)):
        load_stage_a(run, 0, SMALL)
    with pytest.raises(LegacyCheckpointError, match=re.escape(message)):
        train_stage_a(run, 0, SMALL, TRAIN, progress=False)
    (run / "seed0" / f"stage_b_{ARMS['A3'].training_key}.pt").write_bytes(legacy.read_bytes())
    with pytest.raises(LegacyCheckpointError, match="stage_b_.*never unpickled"):
        stage_b_path(run, 0, ARMS["A3"])
    assert not marker.exists()
    assert sorted(p.name for p in (run / "seed0").iterdir()) == [
        "stage_a.pt", f"stage_b_{ARMS['A3'].training_key}.pt"]    # nothing was trained


def _sweep(tmp_path, arms=("A1", "A3")):
    return SweepConfig("test", arms, (0,), model=SMALL, train=TRAIN,
                       eval=dataclasses.replace(EVAL, jitter_delay=None), n_boot=50)


def test_sweep_resumes_and_merges_cells(tmp_path):
    cfg = _sweep(tmp_path)
    first = run_sweep(cfg, run_dir=tmp_path, progress=False, max_cells=1)   # "killed" early
    assert first["meta"]["cells"] == ["A1_seed0"]
    done = cell_path(tmp_path, "A1", 0)
    stamp = done.stat().st_mtime_ns
    final = run_sweep(cfg, run_dir=tmp_path, progress=False)
    assert done.stat().st_mtime_ns == stamp       # the finished cell was not recomputed
    assert final["meta"]["cells"] == ["A1_seed0", "A3_seed0"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["conditions"]) == {"A1", "A3"}
    assert saved["meta"]["threads"] == 1 and saved["meta"]["versions"]["torch"]
    with pytest.raises(ValueError, match="different sweep configuration"):
        run_sweep(dataclasses.replace(cfg, n_boot=51), run_dir=tmp_path, progress=False)


def test_sweep_evaluates_another_runs_checkpoints(tmp_path):
    source = _sweep(tmp_path, ("A3",))
    trained = run_sweep(source, run_dir=tmp_path / "full", progress=False)
    early = dataclasses.replace(source, name="early", train_from=str(tmp_path / "full"),
                                eval=dataclasses.replace(source.eval, scenario="S1E"))
    res = run_sweep(early, run_dir=tmp_path / "early", progress=False)
    assert list(res["conditions"]["A3"]) == ["S1E|d=4"]
    assert not (tmp_path / "early" / "seed0").exists()        # nothing was trained
    assert res["stage_a"]["0"] == trained["stage_a"]["0"]      # the source's probe is reported
    assert res["meta"]["config"]["train_from"] == str(tmp_path / "full")
    assert "train_from" not in trained["meta"]["config"]      # old configurations still match
    with pytest.raises(ValueError, match="differs in"):
        run_sweep(dataclasses.replace(early, model=dataclasses.replace(SMALL, num_steps=3)),
                  run_dir=tmp_path / "other", progress=False)
    with pytest.raises(FileNotFoundError, match="no sweep at"):
        run_sweep(dataclasses.replace(early, train_from=str(tmp_path / "missing")),
                  run_dir=tmp_path / "other2", progress=False)


def test_common_random_numbers(tmp_path):
    cfg = _sweep(tmp_path, ("A1", "A5"))
    res = run_sweep(cfg, run_dir=tmp_path, progress=False)
    assert res["common_random_numbers"] == {"same_episode_seeds": True, "same_noise": True,
                                            "noise_compared_by": ["digests"]}
    cells = load_cells(tmp_path, cfg)
    c1, c5 = (cells[(a, 0)]["conditions"]["S1|d=4"] for a in ("A1", "A5"))
    np.testing.assert_array_equal(c1["episode_seeds"], c5["episode_seeds"])
    assert c1["noise_keys"] == c5["noise_keys"]
    assert c1["noise_digests"] == c5["noise_digests"] and len(set(c1["noise_digests"])) > 1
    # The check compares the noise actually drawn: one altered draw is caught.
    c5["noise_digests"][1] = noise_digest(cycle_noise(c5["episode_seeds"], 99))
    assert _crn_check(cells, ["A1", "A5"], cfg)["same_noise"] is False
    # Cells without digests fall back to the keys that name the draws.
    for c in cells.values():
        for cond in c["conditions"].values():
            del cond["noise_digests"]
    assert _crn_check(cells, ["A1", "A5"], cfg) == {
        "same_episode_seeds": True, "same_noise": True, "noise_compared_by": ["keys"]}
    # Counter-based: the noise of (episode, cycle) does not depend on the batch it is drawn in.
    seeds = np.array([7, 11, 13])
    torch.testing.assert_close(cycle_noise(seeds, 3)[1:], cycle_noise(seeds[1:], 3))
    assert not torch.equal(cycle_noise(seeds, 3), cycle_noise(seeds, 4))


def test_reaction_lag_is_the_capturing_cycles_delay():
    from types import SimpleNamespace as C

    # Jittered naive run: cycles start every 8 ticks and drew delays 3, 5, 4.
    chunks = [C(trigger_tick=t, delay_ticks=d) for t, d in ((0, 3), (8, 5), (16, 4))]
    t_p = np.array([1, 8, 9, 16, 30])
    naive = executor_config(ARMS["A1"], 4, jitter=True)
    # t_p = 1 and 8 are captured by the cycle at 8 (d = 5), 9 and 16 by the one at 16 (d = 4);
    # nothing captures 30, which keeps the nominal d.
    np.testing.assert_array_equal(reaction_lag(ARMS["A1"], naive, chunks, t_p), [5, 5, 4, 4, 4])
    sync = executor_config(ARMS["A0"], 2)
    np.testing.assert_array_equal(reaction_lag(ARMS["A0"], sync, chunks, t_p[:1]), [5])
    # Prefix execution reacts after the p committed actions, whatever the cycle drew.
    prefix = executor_config(ARMS["A3"], 4, jitter=True)
    np.testing.assert_array_equal(reaction_lag(ARMS["A3"], prefix, chunks, t_p), [5] * 5)


def test_noise_digest_tells_draws_apart():
    seeds = np.array([7, 11])
    assert noise_digest(cycle_noise(seeds, 3)) == noise_digest(cycle_noise(seeds, 3))
    assert noise_digest(cycle_noise(seeds, 3)) != noise_digest(cycle_noise(seeds, 4))
    assert len(noise_digest(cycle_noise(seeds, 3))) == 16


def test_scenario_mix_trains_and_evaluates_per_scenario(tmp_path):
    train = dataclasses.replace(TRAIN, scenario=("S1", "S3"))
    settings = dataclasses.replace(EVAL, scenario=("S1", "S3"), jitter_delay=None)
    arm = get_arm("A5")
    train_stage_a(tmp_path, 0, SMALL, train, progress=False)
    train_stage_b(tmp_path, 0, arm, SMALL, train, progress=False)
    model, _ = load_policy(tmp_path, 0, arm, SMALL)
    out = evaluate_arm(model, arm, settings, progress=False)
    assert set(out["conditions"]) == {"S1|d=4", "S3|d=4"}
    s1, s3 = out["conditions"]["S1|d=4"], out["conditions"]["S3|d=4"]
    # Same test seeds, different episodes (the scenario is part of an episode's randomness).
    np.testing.assert_array_equal(s1["episode_seeds"], s3["episode_seeds"])
    assert not np.array_equal(s1["example"]["positions"], s3["example"]["positions"])
    wall = out["conflict_wall"]
    assert wall["scenario"] == "S3" and len(wall["C"]) == 16
    assert wall["late_distance_fresh"] >= 0 and "obs_following_index" not in wall
    with pytest.raises(ValueError, match="tuple of distinct"):
        TrainSettings(scenario=("S1", "S1"))
    with pytest.raises(ValueError, match="one of"):
        EvalSettings(scenario="S5")
    with pytest.raises(ValueError, match="name the one"):
        from xr0lab.dynreach.evaluate import run_condition

        run_condition(model, arm, settings, 4)


def test_linear_probe_reads_a_linear_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 10))
    y = x[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]])
    assert linear_probe(x, y)["r2"] > 0.99


def test_tier1_policy_smoke():
    from xr0lab.dynreach.tier1 import Tier1Policy
    from xr0lab.dynreach.world import DynReach, WorldConfig

    env = DynReach(WorldConfig("S1", image_size=32))
    obs = env.reset([0, 1])
    policy = Tier1Policy(dit_layers=2, vlm_layers=2, image_size=64)
    noise = cycle_noise(np.array([0, 1]), 0)
    chunk = policy(obs, noise, prefix=np.zeros((2, 3, 2)), prefix_length=3)
    assert chunk.shape == (2, 16, 2) and np.isfinite(chunk).all()
    np.testing.assert_allclose(chunk[:, :3], 0.0, atol=1e-6)   # the prefix is kept exactly


def test_tier1_trains_and_runs_through_the_executor():
    from xr0lab.dynreach.tier1 import tier1_smoke

    out = tier1_smoke(steps=2, episodes=2, ticks=20, delay=3)
    assert len(out["losses"]) == 2 and np.isfinite(out["losses"]).all()
    assert out["prefix_lengths"][0] == 0 and out["prefix_lengths"][1] == 3
    assert out["counts"]["committed"] > 0 and np.isfinite(out["actions"]).all()


def test_tier0_keeps_the_frequency_weight_its_committed_results_were_trained_with():
    """The released rule averages the L1 weights over padded dims too; tier 0 pads 30 of 32 dims,
    so it keeps the valid-entry mean the committed sweep used (and masks the FFT inputs)."""
    from xr0lab.dynreach.policies import xr0_config

    train = xr0_config(Tier0Config(), get_arm("A7")).train
    assert train.reweight and train.freq_weight == "valid_mean" and train.mask_freq_padding
