"""Re-anchoring a committed prefix for delta-action embodiments (docs/architecture.md §9).

Delta actions are expressed relative to the state at their chunk's anchor frame. A prefix taken
from the previous chunk was anchored at that chunk's trigger; before it conditions the next chunk
it must be re-expressed relative to the new anchor state:

- joints / gripper (delta = target - anchor):  a' = a + s_old - s_new
- end effector (SE(3), delta = target pose in the anchor's end-effector frame,
  T_target = T_anchor @ T_action):  T_action' = T_new^-1 @ T_old @ T_action,
  i.e. p' = R_new^T (p_old + R_old p - p_new) and R' = R_new^T R_old R.

Rotations are axis-angle (rotation vectors, 3 dims: axis times angle in radians), which is what
delta end-effector actions usually carry and what makes hand-checked cases readable. The anchor
state uses the same layout as the actions, holding absolute values (joint positions, the
end-effector position and axis-angle orientation in the base frame). Dims in no group (padding)
pass through. Absolute-action layouts pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args

import numpy as np
import torch

from xr0lab.runtime.records import Array

ActionKind = Literal["delta", "absolute"]


@dataclass(frozen=True)
class ActionLayout:
    """Which action dims are joints/gripper, end-effector position (3) and rotation (3)."""

    kind: ActionKind = "delta"
    joints: tuple[int, ...] = ()                      # joints and gripper: target - current
    position: tuple[int, int, int] | None = None      # end-effector xyz
    rotation: tuple[int, int, int] | None = None      # end-effector axis-angle

    def __post_init__(self) -> None:
        if self.kind not in get_args(ActionKind):
            raise ValueError(f"ActionLayout.kind must be 'delta' or 'absolute', got {self.kind!r}")
        if (self.position is None) != (self.rotation is None):
            raise ValueError("ActionLayout.position and .rotation come together (an SE(3) pose); "
                             f"got position={self.position}, rotation={self.rotation}")
        for name in ("position", "rotation"):
            dims = getattr(self, name)
            if dims is not None and len(dims) != 3:
                raise ValueError(f"ActionLayout.{name} needs 3 dims, got {dims}")
        dims = self.dims()
        if len(set(dims)) != len(dims) or any(d < 0 for d in dims):
            raise ValueError(f"ActionLayout dims must be distinct and >= 0, got joints="
                             f"{self.joints}, position={self.position}, rotation={self.rotation}")

    def dims(self) -> tuple[int, ...]:
        return tuple(self.joints) + tuple(self.position or ()) + tuple(self.rotation or ())


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors -> (..., 3, 3) rotation matrices (Rodrigues)."""
    theta2 = (v * v).sum(-1, keepdim=True)[..., None]   # (..., 1, 1)
    theta = theta2.sqrt()
    small = theta2 < 1e-12
    # Taylor series near 0, where sin(t)/t and (1 - cos t)/t^2 are 0/0 numerically.
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe)) / (safe * safe))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors with angle in [0, pi].

    Goes through a quaternion built from its best-conditioned component, which stays accurate
    near angle pi where the trace formula's acos loses the axis.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    q_abs = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                         1 - m00 - m11 + m22], -1).clamp(min=0).sqrt()   # 2|w|, 2|x|, 2|y|, 2|z|
    cands = torch.stack([
        torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], -1),
        torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], -1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], -1),
    ], -2) / (2 * q_abs[..., None].clamp(min=1e-12))                      # (..., 4, 4)
    best = q_abs.argmax(-1)[..., None, None].expand(*q_abs.shape[:-1], 1, 4)
    q = cands.gather(-2, best).squeeze(-2)                                 # (..., 4) w x y z
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., 0], q[..., 1:]
    n = xyz.norm(dim=-1)
    angle = 2 * torch.atan2(n, w)
    # angle / n -> 2 / w as n -> 0 (w -> 1 there since w >= 0).
    scale = torch.where(n > 1e-12, angle / n.clamp(min=1e-12), 2 / w.clamp(min=1e-12))
    return xyz * scale[..., None]


def _to_torch(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()


def reanchor_actions(actions: Array, old_state: Array, new_state: Array,
                     layout: ActionLayout) -> Array:
    """Re-express delta `actions` (..., L, A) anchored at `old_state` relative to `new_state`.

    States are (..., A) or (..., 1, A), absolute, in the action layout. Returns the same type
    and dtype as `actions`; absolute layouts are returned unchanged.
    """
    if layout.kind == "absolute":
        return actions
    a = _to_torch(actions)
    s_old, s_new = _to_torch(old_state), _to_torch(new_state)
    for name, s in (("old_state", s_old), ("new_state", s_new)):
        if s.ndim == a.ndim - 1:
            s = s.unsqueeze(-2)
        if s.shape[-1] != a.shape[-1]:
            raise ValueError(f"{name} has {s.shape[-1]} dims, actions have {a.shape[-1]}")
        if name == "old_state":
            s_old = s
        else:
            s_new = s
    if layout.dims() and max(layout.dims()) >= a.shape[-1]:
        raise ValueError(f"ActionLayout dims {layout.dims()} exceed the action size "
                         f"{a.shape[-1]}")
    out = a.clone()
    j = list(layout.joints)
    if j:
        out[..., j] = a[..., j] + s_old[..., j] - s_new[..., j]
    if layout.position is not None:
        pi, ri = list(layout.position), list(layout.rotation)
        r_old, r_new = axis_angle_to_matrix(s_old[..., ri]), axis_angle_to_matrix(s_new[..., ri])
        r_act = axis_angle_to_matrix(a[..., ri])
        p_world = s_old[..., pi] + (r_old @ a[..., pi, None])[..., 0]
        r_new_t = r_new.transpose(-1, -2)
        out[..., pi] = (r_new_t @ (p_world - s_new[..., pi])[..., None])[..., 0]
        out[..., ri] = matrix_to_axis_angle(r_new_t @ r_old @ r_act)
    if isinstance(actions, torch.Tensor):
        return out.to(dtype=actions.dtype, device=actions.device)
    return out.numpy().astype(np.asarray(actions).dtype, copy=False)


class DeltaReanchor:
    """A `Reanchorer` for the executor: `state_of(observation)` gives the anchor state."""

    def __init__(self, layout: ActionLayout, state_of: Callable[[Any], Array]) -> None:
        self.layout = layout
        self.state_of = state_of

    def anchor(self, observation: Any) -> Array:
        return self.state_of(observation)

    def __call__(self, prefix: Array, old_anchor: Array, new_anchor: Array) -> Array:
        return reanchor_actions(prefix, old_anchor, new_anchor, self.layout)
