"""A policy output holding NaN or inf never reaches the robot, on either clock
(`ExecutorConfig.on_invalid_chunk`): literal timelines of the fallback, the count, the one warning,
and the "raise" policy."""

import warnings

import numpy as np
import pytest
import torch

from xr0lab.config import ConfigError
from xr0lab.runtime import (ChunkExecutor, ExecutorConfig, InvalidChunkError, InvalidChunkWarning,
                            RealTimeRunner)

H, S = 8, 4


class Poisoned:
    """Chunk c holds 100 * c + j at index j (an executed value names its chunk and index), copies
    a hard prefix, and puts a NaN (or inf) at [5, 0] of the calls listed in `bad`."""

    def __init__(self, bad=(1,), array=np.asarray, value=float("nan")):
        self.bad, self.array, self.value = set(bad), array, value
        self.prefix_lengths = []

    def __call__(self, observation, prefix, prefix_length):
        c = len(self.prefix_lengths)
        self.prefix_lengths.append(prefix_length)
        out = (100.0 * c + np.arange(H))[:, None].repeat(2, axis=1)
        if prefix_length:
            out[:prefix_length] = np.asarray(prefix)
        if c in self.bad:
            out[5, 0] = self.value
        return self.array(out)


def executed(timeline):
    """Column 0 of every executed action (holds are zeros)."""
    return [float(a) for a in np.asarray(timeline.actions)[:, 0]]


def run_virtual(config, policy, n=14):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tl = ChunkExecutor(policy, config).run(lambda: "obs", n)
    return tl, [w for w in caught if issubclass(w.category, InvalidChunkWarning)]


@pytest.mark.parametrize("array", [np.asarray, torch.as_tensor])
def test_extend_fallback_keeps_the_old_chunk_and_replans_at_once(array):
    policy = Poisoned(bad=(1,), array=array)
    tl, caught = run_virtual(ExecutorConfig(H, S, delay=2, prefix_length=2), policy)
    # Chunk 1 (asked at tick 4, prefix 4, 5) lands at tick 6 with a NaN and is dropped; chunk 2
    # is asked for at once with the committed 6, 7 and lands at tick 8 (anchor 6, index 2).
    assert executed(tl) == [0, 0, 2, 3, 4, 5, 6, 7, 202, 203, 204, 205, 302, 303]
    assert tl.kinds()[4:8] == ("committed",) * 4
    assert [c.id for c in tl.chunks] == [0, 2, 3]
    assert policy.prefix_lengths == [0, 2, 2, 2]
    (bad,) = tl.invalid_chunks
    assert (bad.id, bad.trigger_tick, bad.arrival_tick, bad.non_finite, bad.first_index) == \
        (1, 4, 6, 1, (5, 0))
    assert tl.counts()["invalid_chunks"] == 1
    assert len(caught) == 1 and "chunk 1 (requested at tick 4, arrived at tick 6)" in \
        str(caught[0].message)


def test_hold_fallback_holds_instead_of_the_stale_remainder():
    policy = Poisoned(bad=(1,), value=float("inf"))
    tl, _ = run_virtual(ExecutorConfig(H, S, delay=2, prefix_length=2, overrun="hold"), policy)
    # After the drop nothing of chunk 0 past its committed prefix runs: ticks 6, 7 hold, and
    # chunk 2 is asked for without a prefix (nothing it could honour is committed).
    assert executed(tl) == [0, 0, 2, 3, 4, 5, 0, 0, 202, 203, 204, 205, 302, 303]
    assert tl.kinds()[6:8] == ("fallback_hold",) * 2
    assert policy.prefix_lengths == [0, 2, 0, 2]
    assert tl.chunks[1].overrun and tl.counts()["invalid_chunks"] == 1


def test_sync_holds_through_a_dropped_chunk():
    tl, _ = run_virtual(ExecutorConfig(H, S, delay=2, prefix_length=0, strategy="sync"),
                        Poisoned(bad=(1,)))
    assert executed(tl) == [0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 200, 201, 202, 203]
    assert tl.kinds()[6:10] == ("hold",) * 4


def test_warns_once_per_run_and_counts_every_drop():
    policy = Poisoned(bad=(1, 2, 3))
    tl, caught = run_virtual(ExecutorConfig(H, S, delay=2, prefix_length=2), policy, n=20)
    assert [c.id for c in tl.invalid_chunks] == [1, 2, 3] and len(caught) == 1
    assert np.isfinite(np.asarray(tl.actions)).all()
    # chunk 0 ran out while its replacements kept failing
    assert "starved" in tl.kinds()


@pytest.mark.parametrize("strategy", ["sync", "naive"])
def test_zero_delay_and_a_policy_that_only_returns_nan_still_ticks(strategy):
    """With d = 0 a dropped chunk is re-planned in the same tick once, then the tick holds: the
    clock keeps moving (two policy calls per tick) instead of re-planning forever."""
    policy = Poisoned(bad=range(1000))
    tl, caught = run_virtual(ExecutorConfig(H, S, delay=0, prefix_length=0, strategy=strategy),
                             policy, n=5)
    assert executed(tl) == [0.0] * 5 and set(tl.kinds()) <= {"hold", "starved"}
    assert len(policy.prefix_lengths) == 10 and len(tl.invalid_chunks) == 10
    assert len(caught) == 1


def test_a_bad_first_chunk_holds_until_a_good_one():
    tl, _ = run_virtual(ExecutorConfig(H, S, delay=2, prefix_length=2), Poisoned(bad=(0,)), n=6)
    assert executed(tl) == [0, 0, 0, 0, 102, 103]
    assert tl.kinds()[:4] == ("hold",) * 4


def test_raise_policy_stops_the_run_at_the_arrival():
    config = ExecutorConfig(H, S, delay=2, prefix_length=2, on_invalid_chunk="raise")
    ex = ChunkExecutor(Poisoned(bad=(1,)), config)
    actions = []
    with pytest.raises(InvalidChunkError, match=r"chunk 1 \(requested at tick 4, arrived at tick "
                       r"6\) with 1 NaN/inf entries of \(8, 2\), first at index \(5, 0\).*"
                       r"on_invalid_chunk='raise'"):
        for _ in range(14):
            actions.append(ex.step(lambda: "obs"))
    assert [float(a[0]) for a in actions] == [0, 0, 2, 3, 4, 5]


def test_policy_is_validated():
    with pytest.raises(ConfigError, match=r"on_invalid_chunk must be 'fallback' or 'raise', got "
                       r"'ignore'"):
        ExecutorConfig(H, S, delay=2, prefix_length=2, on_invalid_chunk="ignore")


# ----------------------------------------------------------------------------- real clock


def test_real_time_runner_never_executes_a_nan_chunk():
    acted = []
    runner = RealTimeRunner(Poisoned(bad=(1,)), ExecutorConfig(H, S, delay=2, prefix_length=2),
                            rate_hz=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tl = runner.run(lambda: "obs", acted.append, n_ticks=40)
    commands = np.stack([a for a in acted if a is not None])
    assert np.isfinite(commands).all()
    assert [c.id for c in tl.invalid_chunks] == [1] and 1 not in [c.id for c in tl.chunks]
    assert len([w for w in caught if issubclass(w.category, InvalidChunkWarning)]) == 1


def test_real_time_runner_raise_policy():
    config = ExecutorConfig(H, S, delay=2, prefix_length=2, on_invalid_chunk="raise")
    acted = []
    runner = RealTimeRunner(Poisoned(bad=(1,)), config, rate_hz=100)
    with pytest.raises(InvalidChunkError, match=r"chunk 1 \(requested at tick \d+, arrived at "
                       r"tick \d+\) with 1 NaN/inf entries"):
        runner.run(lambda: "obs", acted.append, n_ticks=40)
    assert all(a is None or np.isfinite(a).all() for a in acted)
