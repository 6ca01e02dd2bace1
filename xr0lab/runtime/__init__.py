"""Asynchronous chunk execution on a virtual or real clock (architecture spec section 9).

timing.py     config, delay models, guidance weights, per-tick records, invariants
scheduler.py  the scheduling state machine every clock shares, and the timeline it records
executor.py   virtual-clock executor, real-time runner, model adapter
reanchor.py   re-expressing delta-action prefixes at a new anchor (joints, SE(3))
scene.py      a scripted pursuit scene and policy for demonstrations
plot.py       timeline plots (matplotlib imported lazily)
"""

from xr0lab.runtime.executor import ChunkExecutor, ModelPolicy, RealTimeRunner
from xr0lab.plots.timeline import plot_actions, plot_paths, plot_timeline
from xr0lab.runtime.reanchor import (ActionLayout, DeltaReanchor, axis_angle_to_matrix,
                                     matrix_to_axis_angle, reanchor_actions)
from xr0lab.runtime.scene import IndexPolicy, PursuitPolicy, PursuitScene, SceneRun, run_scene
from xr0lab.runtime.scheduler import ChunkScheduler, Timeline
from xr0lab.runtime.timing import (ChunkRecord, ConstantDelay, ExecutorConfig, InferenceRequest,
                                   InvariantMonitor, InvariantViolation, SampledDelay, TickRecord,
                                   TraceDelay, call_policy, guidance_weights, latency_to_ticks)

__all__ = [
    "ActionLayout", "ChunkExecutor", "ChunkRecord", "ChunkScheduler", "ConstantDelay",
    "DeltaReanchor", "ExecutorConfig", "InferenceRequest", "InvariantMonitor",
    "IndexPolicy", "InvariantViolation", "ModelPolicy", "PursuitPolicy", "PursuitScene", "RealTimeRunner",
    "SampledDelay", "SceneRun", "TickRecord", "Timeline", "TraceDelay", "axis_angle_to_matrix",
    "call_policy", "guidance_weights", "latency_to_ticks", "matrix_to_axis_angle",
    "plot_actions", "plot_paths", "plot_timeline", "reanchor_actions", "run_scene",
]
