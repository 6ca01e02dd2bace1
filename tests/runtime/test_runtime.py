"""Chunk executor: literal timelines, fallbacks, invariants, real-time runner, re-anchoring."""

import math
import threading

import numpy as np
import pytest
import torch

from xr0lab.runtime import (ActionLayout, ChunkExecutor, ConstantDelay, DeltaReanchor,
                            ExecutorConfig, InvariantMonitor, InvariantViolation, ModelPolicy,
                            PursuitPolicy, PursuitScene, RealTimeRunner, SampledDelay, TickRecord,
                            TraceDelay, axis_angle_to_matrix, guidance_weights, latency_to_ticks,
                            matrix_to_axis_angle, reanchor_actions, run_scene)

H, S = 8, 4


class Scripted:
    """Chunk c holds 100 * c + j at index j, so an executed value names its (chunk, index).
    Honours a hard prefix by copying it, and records every call."""

    def __init__(self, shape=(H, 1), array=np.asarray):
        self.calls = []
        self.shape = shape
        self.array = array

    def __call__(self, observation, prefix, prefix_length, prefix_weights=None):
        c = len(self.calls)
        self.calls.append(dict(obs=observation, prefix=None if prefix is None else np.array(prefix),
                               length=prefix_length, weights=prefix_weights))
        out = np.zeros(self.shape)
        out[..., :, :] = (100 * c + np.arange(H))[:, None]
        if prefix_length:
            out[..., :prefix_length, :] = prefix
        return self.array(out)


def run(config, n=14, delays=None, policy=None):
    policy = policy or Scripted()
    tl = ChunkExecutor(policy, config, delays=delays).run(lambda: "obs", n)
    return tl, policy


def triples(tl):
    return [(r.chunk, r.index, r.kind) for r in tl.ticks]


HOLD = (None, None, "hold")


def test_prefix_mode_literal_timeline():
    tl, policy = run(ExecutorConfig(H, S, delay=2, prefix_length=2, strategy="prefix"))
    assert triples(tl) == [
        HOLD, HOLD,                                            # first chunk computing
        (0, 2, "fresh"), (0, 3, "fresh"),                      # arrives at tick 2 -> index 2
        (0, 4, "committed"), (0, 5, "committed"),              # chunk 1 computes on prefix 0[4:6]
        (1, 2, "fresh"), (1, 3, "fresh"),
        (1, 4, "committed"), (1, 5, "committed"),
        (2, 2, "fresh"), (2, 3, "fresh"), (2, 4, "committed"), (2, 5, "committed")]
    np.testing.assert_array_equal(tl.actions[:, 0], [0, 0, 2, 3, 4, 5, 102, 103, 104, 105,
                                                     202, 203, 204, 205])
    assert policy.calls[0]["prefix"] is None and policy.calls[0]["length"] == 0
    np.testing.assert_array_equal(policy.calls[1]["prefix"][:, 0], [4, 5])
    np.testing.assert_array_equal(policy.calls[2]["prefix"][:, 0], [104, 105])
    assert [(c.trigger_tick, c.arrival_tick, c.anchor_tick, c.start_index) for c in tl.chunks] \
        == [(0, 2, 0, 2), (4, 6, 4, 2), (8, 10, 8, 2)]
    assert [c.prefix_error for c in tl.chunks] == [None, 0.0, 0.0]
    np.testing.assert_array_equal(np.flatnonzero(tl.seams()), [2, 6, 10])


def test_prefix_longer_than_delay_executes_the_new_chunks_prefix_positions():
    tl, _ = run(ExecutorConfig(H, S, delay=2, prefix_length=3), n=8)
    assert triples(tl)[6:] == [(1, 2, "prefix"), (1, 3, "fresh")]
    assert tl.actions[6, 0] == 6          # chunk 1 index 2 is the committed value 0[6]


def test_sync_mode_literal_timeline():
    tl, policy = run(ExecutorConfig(H, S, delay=2, prefix_length=0, strategy="sync"))
    assert triples(tl) == [
        HOLD, HOLD, (0, 0, "fresh"), (0, 1, "fresh"), (0, 2, "fresh"), (0, 3, "fresh"),
        HOLD, HOLD, (1, 0, "fresh"), (1, 1, "fresh"), (1, 2, "fresh"), (1, 3, "fresh"),
        HOLD, HOLD]
    assert [c.anchor_tick for c in tl.chunks] == [2, 8, 14][:len(tl.chunks)]
    assert all(call["prefix"] is None for call in policy.calls)
    np.testing.assert_array_equal(tl.actions[[6, 7], 0], [0, 0])    # zero command while holding


def test_naive_mode_bridges_without_a_prefix():
    tl, policy = run(ExecutorConfig(H, S, delay=2, prefix_length=0, strategy="naive"))
    assert [k for _, _, k in triples(tl)[2:8]] == ["fresh", "fresh", "bridge", "bridge",
                                                  "fresh", "fresh"]
    assert [(call["prefix"], call["length"]) for call in policy.calls] == [(None, 0)] * 4
    np.testing.assert_array_equal(tl.actions[4:8, 0], [4, 5, 102, 103])


def test_guided_mode_passes_remainder_and_weights():
    tl, policy = run(ExecutorConfig(H, S, delay=2, prefix_length=0, strategy="guided"))
    call = policy.calls[1]
    np.testing.assert_array_equal(call["prefix"][:, 0], [4, 5, 6, 7])
    assert call["length"] == 4
    np.testing.assert_allclose(call["weights"], guidance_weights(H, 2, 4))
    assert [k for _, _, k in triples(tl)[4:6]] == ["committed", "committed"]


def test_guidance_weights_by_hand():
    e = math.e
    c2, c3 = 2 / 3, 1 / 3        # c_i = (span - i) / (span - d + 1) with span 4, d 2
    np.testing.assert_allclose(guidance_weights(8, 2, 4), [
        1, 1, c2 * (math.exp(c2) - 1) / (e - 1), c3 * (math.exp(c3) - 1) / (e - 1), 0, 0, 0, 0],
        rtol=1e-6)
    w = guidance_weights(30, 3, 10)
    assert (np.diff(w) <= 0).all() and w[2] == 1 and w[10:].sum() == 0


@pytest.mark.parametrize("overrun, kind6, value6",
                         [("extend", "extend", 6), ("hold", "fallback_hold", 0)])
def test_jitter_past_the_prefix_falls_back_and_is_counted(overrun, kind6, value6):
    cfg = ExecutorConfig(H, S, delay=2, prefix_length=2, overrun=overrun)
    tl, _ = run(cfg, delays=TraceDelay((2, 3, 2)))
    assert triples(tl)[4:10] == [(0, 4, "committed"), (0, 5, "committed"),
                                 (0 if overrun == "extend" else None,
                                  6 if overrun == "extend" else None, kind6),
                                 (1, 3, "fresh"),             # arrived after 3 ticks: index 3
                                 (1, 4, "committed"), (1, 5, "committed")]
    assert tl.actions[6, 0] == value6
    assert tl.counts()[kind6] == 1 and tl.counts()["overrun_cycles"] == 1
    assert [c.overrun for c in tl.chunks] == [False, True, False]
    assert tl.chunks[1].delay_ticks == 3 and tl.chunks[1].start_index == 3


def test_old_chunk_running_out_starves_and_late_trigger_shortens_the_prefix():
    # Chunk 1 takes 7 ticks: committed 4, 5; extended 6, 7; starved at ticks 8..10; it lands at
    # index 7, already past s, so chunk 2 triggers at once with a 1-action prefix.
    tl, policy = run(ExecutorConfig(H, S, delay=2, prefix_length=2), n=14,
                     delays=TraceDelay((2, 7, 2)))
    assert [k for _, _, k in triples(tl)[4:14]] == [
        "committed", "committed", "extend", "extend", "starved", "starved", "starved",
        "committed", "starved", "fresh"]
    assert triples(tl)[13] == (2, 2, "fresh")
    assert tl.counts()["overrun_cycles"] == 2     # chunk 2 (1-action prefix) also ran past it
    assert tl.chunks[2].trigger_tick == 11 and tl.chunks[2].prefix_length == 1
    np.testing.assert_array_equal(policy.calls[2]["prefix"][:, 0], [107])


def test_constraints_are_validated_up_front():
    with pytest.raises(ValueError, match=r"prefix_length p=1 < delay d=2"):
        ExecutorConfig(H, S, delay=2, prefix_length=1)
    with pytest.raises(ValueError, match=r"delay d=5 > .*H - s = 4"):
        ExecutorConfig(H, S, delay=5, prefix_length=5, strategy="naive")
    with pytest.raises(ValueError, match=r"p=5 > H - s = 4"):
        ExecutorConfig(H, S, delay=2, prefix_length=5)
    with pytest.raises(ValueError, match=r"p=2 is only meaningful with strategy 'prefix'"):
        ExecutorConfig(H, S, delay=2, prefix_length=2, strategy="naive")
    with pytest.raises(ValueError, match=r"strategy must be one of"):
        ExecutorConfig(H, S, strategy="async")
    with pytest.raises(ValueError, match=r"1 <= execution_horizon s <= H"):
        ExecutorConfig(H, 9, delay=0, prefix_length=0)
    assert ExecutorConfig(H, S, delay=6, prefix_length=0, strategy="sync").trigger == 4
    assert ExecutorConfig.from_trigger(30, 10, delay=3, prefix_length=3).execution_horizon == 20


def test_bad_policy_output_is_rejected_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"shape \(7, 1\); expected \(\.\.\., H=8, A\)"):
        run(ExecutorConfig(H, S, delay=2, prefix_length=2), policy=lambda o, p, n: np.zeros((7, 1)))
    with pytest.raises(TypeError, match="got list"):
        run(ExecutorConfig(H, S, delay=2, prefix_length=2),
            policy=lambda o, p, n: [[0.0]] * H)


def test_batch_axes_and_torch_ride_along():
    tl, _ = run(ExecutorConfig(H, S, delay=2, prefix_length=2),
                policy=Scripted(shape=(3, H, 2), array=torch.as_tensor))
    assert isinstance(tl.actions, torch.Tensor) and tl.actions.shape == (3, 14, 2)
    assert tl.actions[2, 6, 1].item() == 102


def test_delay_models():
    assert latency_to_ticks(0.1, 30) == 3          # not 4: 0.1 * 30 is 3.0000000000000004
    assert TraceDelay.from_latencies([0.1, 0.05, 0.034], 30).ticks == (3, 2, 2)
    with pytest.raises(IndexError, match="wrap=True"):
        TraceDelay((1, 2), wrap=False)(2)
    jitter = SampledDelay.jitter(3, seed=1)
    draws = [jitter(c) for c in range(200)]
    assert set(draws) == {2, 3, 4}
    assert [jitter(c) for c in reversed(range(200))] == draws[::-1]   # counter-based
    assert ConstantDelay(2)(99) == 2


# ----------------------------------------------------------------------------- invariants


def tick(t, chunk=0, index=None, kind="fresh"):
    return TickRecord(t, chunk, t if index is None and chunk is not None else index, kind)


CHUNK = np.arange(8.0)[:, None]


def test_invariant_skipped_tick():
    m = InvariantMonitor()
    m.on_tick(tick(0), CHUNK[0], CHUNK, 0)
    with pytest.raises(InvariantViolation, match="tick 1 skipped"):
        m.on_tick(tick(2), CHUNK[2], CHUNK, 0)


def test_invariant_tick_executed_twice():
    m = InvariantMonitor()
    m.on_tick(tick(0), CHUNK[0], CHUNK, 0)
    with pytest.raises(InvariantViolation, match="tick 1 executed twice"):
        m.on_tick(tick(0), CHUNK[0], CHUNK, 0)


def test_invariant_action_must_equal_its_chunk_entry():
    with pytest.raises(InvariantViolation, match=r"differs from chunk 0\[0\]"):
        InvariantMonitor().on_tick(tick(0), CHUNK[0] + 1, CHUNK, 0)


def test_invariant_index_must_match_the_anchor():
    with pytest.raises(InvariantViolation, match="misaligned"):
        InvariantMonitor().on_tick(tick(0, index=1), CHUNK[1], CHUNK, 0)


def test_invariant_index_executed_twice():
    m = InvariantMonitor()
    m.on_tick(tick(0, index=3), CHUNK[3], CHUNK, -3)
    with pytest.raises(InvariantViolation, match="executed again"):
        m.on_tick(tick(1, index=3), CHUNK[3], CHUNK, -2)


def test_invariant_replaced_chunk_never_runs_again():
    m = InvariantMonitor()
    m.on_tick(tick(0, chunk=0), CHUNK[0], CHUNK, 0)
    m.on_tick(tick(1, chunk=1), CHUNK[1], CHUNK, 0)
    with pytest.raises(InvariantViolation, match="chunk 0 executed after a newer chunk"):
        m.on_tick(tick(2, chunk=0), CHUNK[2], CHUNK, 0)


def test_invariant_committed_actions_equal_the_prefix():
    executed = [(tick(4, index=4, kind="committed"), CHUNK[4]),
                (tick(5, index=5, kind="committed"), CHUNK[5] + 0.5)]
    with pytest.raises(InvariantViolation, match=r"tick 5 .* conditioning prefix\[1\]"):
        InvariantMonitor().on_arrival(1, CHUNK[4:6], executed)


def test_policy_reusing_its_output_buffer_trips_the_prefix_invariant():
    buffer = np.zeros((H, 1))

    def reusing(observation, prefix, prefix_length):
        # A real bug: writing the next chunk into the array the executor is still running.
        buffer[:, 0] = 100 * reusing.calls + np.arange(H)
        reusing.calls += 1
        if prefix_length:
            buffer[:prefix_length] = prefix
        return buffer
    reusing.calls = 0
    with pytest.raises(InvariantViolation, match="chunk 1: tick 4"):
        run(ExecutorConfig(H, S, delay=2, prefix_length=2), policy=reusing)


# ----------------------------------------------------------------------------- real-time runner


def inference_threads():
    return [t for t in threading.enumerate() if t.name.startswith("xr0lab-inference")]


def test_real_time_runner_keeps_its_rate_and_measures_delay():
    import time

    def sleepy(observation, prefix, prefix_length):
        time.sleep(0.025)                       # 1.25 periods at 50 Hz -> d = 2 ticks
        return Scripted()(observation, prefix, prefix_length)

    acted = []
    runner = RealTimeRunner(sleepy, ExecutorConfig(H, S, delay=2, prefix_length=2), rate_hz=50)
    tl = runner.run(lambda: "obs", acted.append, n_ticks=100)
    assert len(acted) == 100 and [r.tick for r in tl.ticks] == list(range(100))
    assert abs(tl.periods().mean() - 0.02) < 0.2 * 0.02
    assert acted[0] is None                     # nothing to command before the first chunk
    assert len(tl.chunks) >= 15
    assert all(c.latency_s >= 0.025 and c.delay_ticks >= latency_to_ticks(c.latency_s, 50)
               for c in tl.chunks)
    assert tl.counts()["committed"] > 0
    assert not inference_threads()


def test_real_time_runner_reraises_worker_errors_and_shuts_down():
    def failing(observation, prefix, prefix_length):
        if prefix_length:
            raise RuntimeError("camera unplugged")
        return np.zeros((H, 1))

    runner = RealTimeRunner(failing, ExecutorConfig(H, S, delay=2, prefix_length=2), rate_hz=100)
    with pytest.raises(RuntimeError, match="camera unplugged"):
        runner.run(lambda: "obs", lambda a: None, n_ticks=200)
    assert not inference_threads()


# ----------------------------------------------------------------------------- re-anchoring


def rot_z(deg):
    return [0.0, 0.0, math.radians(deg)]


def test_reanchor_joints_is_target_minus_new_anchor():
    layout = ActionLayout("delta", joints=(0, 1))
    out = reanchor_actions(np.array([[0.5, -0.2]]), np.array([1.0, 2.0]), np.array([1.2, 1.5]),
                           layout)
    np.testing.assert_allclose(out, [[0.3, 0.3]])


EE = ActionLayout("delta", joints=(6,), position=(0, 1, 2), rotation=(3, 4, 5))


def test_reanchor_se3_new_anchor_rotated_90_about_z():
    # Target at world (1, 1, 0), identity orientation. New anchor at (1, 0, 0) facing +y: the
    # target is 1 ahead along the new x axis, and rotated -90 degrees about z.
    action = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.7]])
    old = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1])
    new = torch.tensor([1.0, 0.0, 0.0, *rot_z(90), 0.3])
    out = reanchor_actions(action, old, new, EE)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0, 0.0, *rot_z(-90), 0.5]]))
    assert out.dtype == torch.float32


def test_reanchor_se3_old_anchor_rotated():
    # Old anchor faces +y: 1 ahead of it is world (0, 1, 0); composing 90 + 90 gives 180.
    action = np.array([[1.0, 0.0, 0.0, *rot_z(90), 0.0]])
    old = np.array([[0.0, 0.0, 0.0, *rot_z(90), 0.0]])
    out = reanchor_actions(action, old, np.zeros(7), EE)
    np.testing.assert_allclose(out[0, :3], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(out[0, 3:6]), [0.0, 0.0, math.pi], atol=1e-9)
    assert isinstance(out, np.ndarray)


def test_reanchor_round_trip_restores_the_world_target():
    rng = np.random.default_rng(0)
    a, s0, s1 = rng.normal(size=(5, 7)), rng.normal(size=7), rng.normal(size=7)
    back = reanchor_actions(reanchor_actions(a, s0, s1, EE), s1, s0, EE)
    np.testing.assert_allclose(back[:, :3], a[:, :3], atol=1e-9)
    np.testing.assert_allclose(axis_angle_to_matrix(torch.as_tensor(back[:, 3:6])),
                               axis_angle_to_matrix(torch.as_tensor(a[:, 3:6])), atol=1e-9)


def test_axis_angle_round_trip_near_zero_and_pi():
    v = torch.tensor([[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [0.3, -0.2, 0.5],
                      [0.0, math.pi - 1e-7, 0.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    v[-1] *= (math.pi - 1e-3) / 3
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(v)), v, atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(torch.tensor([rot_z(90)])),
                               torch.tensor([[[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]]), atol=1e-7,
                               rtol=0)


def test_absolute_actions_pass_through():
    a = torch.ones(2, 7)
    assert reanchor_actions(a, torch.zeros(7), torch.ones(7), ActionLayout("absolute")) is a


def test_layout_validation():
    with pytest.raises(ValueError, match="come together"):
        ActionLayout(position=(0, 1, 2))
    with pytest.raises(ValueError, match="distinct"):
        ActionLayout(joints=(0, 1), position=(1, 2, 3), rotation=(4, 5, 6))
    with pytest.raises(ValueError, match="exceed the action size"):
        reanchor_actions(np.zeros((1, 2)), np.zeros(2), np.zeros(2), ActionLayout(joints=(2,)))


def test_executor_feeds_the_reanchored_prefix_to_the_policy():
    states = iter([np.array([0.0]), np.array([10.0]), np.array([30.0])])
    reanchor = DeltaReanchor(ActionLayout("delta", joints=(0,)), state_of=lambda obs: obs)
    policy = Scripted()
    ex = ChunkExecutor(policy, ExecutorConfig(H, S, delay=2, prefix_length=2), reanchor=reanchor)
    tl = ex.run(lambda: next(states), 10)
    # Chunk 0 anchored at state 0 commits 4, 5; re-expressed at state 10 they are -6, -5.
    np.testing.assert_array_equal(policy.calls[1]["prefix"][:, 0], [-6, -5])
    np.testing.assert_array_equal(tl.actions[4:6, 0], [4, 5])   # executed in chunk 0's frame
    assert tl.chunks[1].prefix_error == 0.0


# ----------------------------------------------------------------------------- adapters, scene


class FakeModel:
    def __init__(self):
        self.calls = []

    def predict_actions(self, **kwargs):
        self.calls.append(kwargs)
        return torch.zeros(1, H, 32)


def test_model_policy_maps_the_prefix_and_counts_seeds():
    model = FakeModel()
    policy = ModelPolicy(model, lambda obs: {"state": obs}, seed=7)
    ChunkExecutor(policy, ExecutorConfig(H, S, delay=2, prefix_length=2)).run(lambda: "s", 6)
    assert [(c["seed"], c["prefix"] is None, c["prefix_length"]) for c in model.calls] == \
        [(7, True, None), (8, False, 2)]
    assert model.calls[1]["prefix"].shape == (1, 2, 32) and model.calls[1]["state"] == "s"
    with pytest.raises(NotImplementedError, match="guidance"):
        policy("s", torch.zeros(1, 4, 32), 4, prefix_weights=torch.ones(H))


def test_tiny_model_runs_through_the_executor_and_keeps_the_prefix(tiny_async_model):
    import xr0lab
    inputs = xr0lab.make_example_inputs(tiny_async_model.config, batch_size=1, seed=0)
    policy = ModelPolicy(tiny_async_model, lambda obs: inputs, seed=0)
    cfg = ExecutorConfig(30, 20, delay=3, prefix_length=3)
    tl = ChunkExecutor(policy, cfg).run(lambda: None, 45)
    assert tl.actions.shape == (1, 45, 32) and len(tl.chunks) == 3
    assert [c.prefix_length for c in tl.chunks] == [0, 3, 3]
    assert all(c.prefix_error < 1e-6 for c in tl.chunks[1:])     # the model commits its prefix


def test_scene_prefix_execution_is_smoother_than_naive():
    scene = PursuitScene()
    policy = PursuitPolicy(chunk_length=16)
    ratio = {mode: run_scene(scene, policy, ExecutorConfig(16, 8, delay=3, prefix_length=p,
                                                           strategy=mode)).timeline.smoothness()
             for mode, p in (("naive", 0), ("prefix", 3))}
    assert ratio["prefix"].boundary_ratio < 0.5 * ratio["naive"].boundary_ratio


def test_timeline_plot_draws_one_cell_per_executed_tick():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xr0lab.plots.timeline import plot_timeline
    tl, _ = run(ExecutorConfig(H, S, delay=2, prefix_length=2))
    ax = plot_timeline(tl).axes[0]
    # One dotted outline per chunk plus one cell per tick (held ticks sit on the awaited row).
    assert len(ax.patches) == len(tl.chunks) + len(tl.ticks)
    plt.close(ax.figure)
