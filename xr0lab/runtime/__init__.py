"""Asynchronous chunk execution on a virtual or real clock (docs/architecture.md §9).

Read `config.py` first (the timeline and its constraints), then `scheduler.py`.

config.py      `ExecutorConfig`: H, s, d, p and the execution strategy (sync/naive/prefix/guided)
delays.py      delay models (constant, sampled, replayed) and latency -> ticks
guidance.py    soft prefix weights for the guided strategy
records.py     per-tick and per-chunk records, the inference request, the re-anchoring protocol,
               and the record and errors of an invalid (NaN/inf) chunk
arrays.py      helpers that treat torch tensors and numpy arrays alike
invariants.py  always-on timeline checks
scheduler.py   the scheduling state machine every clock shares, and the timeline it records
executor.py    virtual-clock executor, real-time runner, model adapter
reanchor.py    re-expressing delta-action prefixes at a new anchor (joints, SE(3))
smoothness.py  boundary discontinuity ratio, jerk, seam jumps
planner.py     latency budget planner: feasible settings and their reaction-time floors
scene.py       a scripted pursuit scene and policy for demonstrations

Timeline plots are in `xr0lab.plots.timeline`.
"""

from xr0lab.runtime.config import ExecutorConfig
from xr0lab.runtime.delays import ConstantDelay, SampledDelay, TraceDelay, latency_to_ticks
from xr0lab.runtime.executor import ChunkExecutor, ModelPolicy, RealTimeRunner
from xr0lab.runtime.guidance import guidance_weights
from xr0lab.runtime.invariants import InvariantMonitor, InvariantViolation
from xr0lab.runtime.reanchor import (ActionLayout, DeltaReanchor, axis_angle_to_matrix,
                                     matrix_to_axis_angle, reanchor_actions)
from xr0lab.runtime.records import (ChunkRecord, InferenceRequest, InvalidChunk,
                                    InvalidChunkError, InvalidChunkWarning, TickRecord,
                                    call_policy)
from xr0lab.runtime.scene import IndexPolicy, PursuitPolicy, PursuitScene, SceneRun, run_scene
from xr0lab.runtime.scheduler import ChunkScheduler, Timeline

__all__ = [
    "ActionLayout", "ChunkExecutor", "ChunkRecord", "ChunkScheduler", "ConstantDelay",
    "DeltaReanchor", "ExecutorConfig", "InferenceRequest", "InvalidChunk", "InvalidChunkError",
    "InvalidChunkWarning", "InvariantMonitor",
    "IndexPolicy", "InvariantViolation", "ModelPolicy", "PursuitPolicy", "PursuitScene",
    "RealTimeRunner", "SampledDelay", "SceneRun", "TickRecord", "Timeline", "TraceDelay",
    "axis_angle_to_matrix", "call_policy", "guidance_weights", "latency_to_ticks",
    "matrix_to_axis_angle", "reanchor_actions", "run_scene",
]
