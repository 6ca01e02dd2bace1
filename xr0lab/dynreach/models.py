"""DynReach policies: the benchmark arms as data, the tier-0 model and a tier-1 adapter.

Axis legend: B batch, S image side, G x G image-token grid, E encoder width, L context tokens,
n context layers (= DiT layers), K kv heads, h head dim, H chunk length, A = 2 action dims.

Tier 0 (benchmark spec section 4): a small conv encoder stands in for the VLM. It turns the
image, the proprioception and the instruction into L tokens, mixes them with one transformer
layer, and projects them to per-layer keys/values, i.e. a `VLMContext`. The action expert is
xr0lab's own `FlowActionExpert` (DiT blocks, masks, positions, flow code) at a smaller width:
every arm runs the same code paths as the full model and differs only in the knobs of its `Arm`.

Normalisation: actions are divided by v_max (so |a| <= 1), positions map [0, 1] -> [-1, 1].

Tier 1 wraps `XR0Model(preset("tiny"))` (a real tiny Qwen3-VL + DiT) so DynReach frames go
through the released prompt and processor; it is an integration path, smoke-tested only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xr0lab.dynreach.world import INSTRUCTION_LENGTH, INSTRUCTIONS, V_MAX, VOCAB
from xr0lab.config import (ActionConfig, ActionAttention, DiTConfig, FlowConfig, ModeConfig,
                           PrefixSchedule, TrainConfig, VLMConfig, XR0Config)
from xr0lab.model.dit import RMSNorm
from xr0lab.runtime.timing import ExecutionStrategy
from xr0lab.model.vlm import VLMContext

# ------------------------------------------------------------------------------------ arms


@dataclass(frozen=True)
class Arm:
    """One benchmark arm (benchmark spec section 5): how stage B trains and how it runs.

    `train_prefix` False means stage B fine-tunes with p = 0 only (matched compute); True uses
    the prefix schedule. The mask fields are the stage-B action-action mask; the runtime is the
    executor mode. Arms whose training fields agree share one stage-B checkpoint
    (`training_key`), e.g. A0, A1 and A2 differ only at run time.
    """

    id: str
    label: str
    runtime: ExecutionStrategy  # how the executor runs this arm
    train_prefix: bool
    attention: ActionAttention = "causal"
    window: int | None = None
    rope_offset: int = 0
    prefix_hiding: bool = False
    reweight: bool = False
    prefix_schedule: PrefixSchedule = "released"

    def mode(self) -> ModeConfig:
        """The DiT mode: xr0-async (prefix-capable) for prefix arms, release otherwise."""
        return ModeConfig(mode="xr0-async" if self.train_prefix else "release",
                          action_attention=self.attention, window=self.window,
                          rope_offset=self.rope_offset, prefix_hiding=self.prefix_hiding)

    @property
    def training_key(self) -> str:
        """Name of the stage-B checkpoint: equal for arms with identical training."""
        w = "" if self.window is None else f"w{self.window}"
        parts = [("prefix-" + self.prefix_schedule) if self.train_prefix else "noprefix",
                 self.attention + w]
        if self.rope_offset:
            parts.append(f"rope{self.rope_offset}")
        if self.prefix_hiding:
            parts.append("hide")
        if self.reweight:
            parts.append("rw")
        return "_".join(parts)

    def prefix_length(self, delay: int, execution_horizon: int = 8, chunk: int = 16) -> int:
        """Evaluation prefix p for a nominal delay d: p = max(d, 1) for prefix arms (p >= d is
        the seamless condition; p >= 1 keeps d = 0 conditioned on the committed action), else 0.
        """
        if self.runtime != "prefix":
            return 0
        p = max(delay, 1)
        if p > chunk - execution_horizon:
            raise ValueError(f"arm {self.id}: p={p} exceeds H - s = {chunk - execution_horizon}")
        return p


def _arms() -> dict[str, Arm]:
    out = {
        "A0": Arm("A0", "sync", "sync", False),
        "A1": Arm("A1", "naive", "naive", False),
        "A2": Arm("A2", "IT-RTC (guidance)", "guided", False),
        "A3": Arm("A3", "TT-RTC (full mask)", "prefix", True, "full"),
        "A4": Arm("A4", "causal (release mask)", "prefix", True, "causal"),
    }
    for w in (1, 2, 4, 8):
        out[f"A5w{w}"] = Arm(f"A5w{w}", f"Λ band w={w}", "prefix", True, "band", w)
    for w in (1, 2, 4, 8):
        out[f"A6w{w}"] = Arm(f"A6w{w}", f"Λ hard block w={w}", "prefix", True, "hard_block", w)
    out["A7"] = Arm("A7", "XR-0 full (band 4, RoPE +10, hiding, reweight)", "prefix", True,
                    "band", 4, rope_offset=10, prefix_hiding=True, reweight=True)
    # Not an arm of the spec's table: A3 trained with the report's p ~ U{0..6} schedule.
    out["A3paper"] = dataclasses.replace(out["A3"], id="A3paper", prefix_schedule="paper",
                                         label="TT-RTC, paper schedule p ~ U{0..6}")
    return out


ARMS: dict[str, Arm] = _arms()
# Shorthand used by the spec's primary endpoint: A5 and A6 at w = 4.
ARMS["A5"] = dataclasses.replace(ARMS["A5w4"], id="A5")
ARMS["A6"] = dataclasses.replace(ARMS["A6w4"], id="A6")


def get_arm(arm_id: str) -> Arm:
    if arm_id not in ARMS:
        raise KeyError(f"unknown arm {arm_id!r}; known: {', '.join(ARMS)}")
    return ARMS[arm_id]


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Tier0Config:
    """Sizes of the tier-0 model. head_dim * kv heads is what one context token carries."""

    image_size: int = 32
    grid: int = 4                 # image tokens: grid x grid
    encoder_width: int = 64       # E
    dit_layers: int = 4
    dit_width: int = 64
    head_dim: int = 16
    kv_heads: int = 2
    num_steps: int = 5            # flow steps at inference
    chunk_length: int = 16
    # Actions and state ride in the first 2 of `padded_dim` dims with an action mask, as in the
    # released 32-dim layout. Why not 2: the output head is Linear(D -> A), GELU, Linear(A -> A)
    # without bias, and with A = 2 that 2-wide GELU bottleneck can only emit a cone of
    # velocities; the flow loss then plateaus at chance (measured: cos(pred, label) ~ 0).
    padded_dim: int = 32

    def __post_init__(self) -> None:
        if self.image_size not in (32, 64):
            raise ValueError(f"Tier0Config.image_size must be 32 or 64, got {self.image_size}")
        if self.image_size % self.grid or (self.image_size // self.grid) & \
                (self.image_size // self.grid - 1):
            raise ValueError(f"Tier0Config.grid={self.grid} must divide image_size="
                             f"{self.image_size} by a power of two")
        if self.head_dim % 4:
            raise ValueError("Tier0Config.head_dim must be a multiple of 4 (M-RoPE sections)")

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid + 1 + INSTRUCTION_LENGTH


def xr0_config(cfg: Tier0Config, arm: Arm | None = None, *, freq_coef: float = 1.0) -> XR0Config:
    """The `XR0Config` of the tier-0 action expert for `arm` (None: stage A, release causal).

    The VLMConfig only describes the shape of the context the encoder produces (layers, kv heads,
    head dim); no language model is built from it.
    """
    half = cfg.head_dim // 2
    section = (half - 2 * (half // 3), half // 3, half // 3)
    vlm = VLMConfig(num_layers=cfg.dit_layers, hidden_size=cfg.encoder_width,
                    intermediate_size=2 * cfg.encoder_width, num_heads=cfg.kv_heads,
                    num_kv_heads=cfg.kv_heads, head_dim=cfg.head_dim, mrope_section=section,
                    rope_theta=10_000.0)
    dit = DiTConfig(num_layers=cfg.dit_layers, hidden_size=cfg.dit_width, head_dim=cfg.head_dim,
                    num_kv_heads=cfg.kv_heads, timestep_dim=64)
    mode = ModeConfig() if arm is None else arm.mode()
    # Padded dims are masked out of the frequency term too (the released code does not mask
    # them; with 30 padded dims the term would mostly fit noise on dims nobody executes).
    train = TrainConfig(prefix_schedule="released" if arm is None else arm.prefix_schedule,
                        reweight=bool(arm and arm.reweight), freq_coef=freq_coef,
                        mask_freq_padding=True, training_repeat=1)
    return XR0Config(name="dynreach-tier0", vlm=vlm, dit=dit,
                     action=ActionConfig(chunk_length=cfg.chunk_length,
                                         action_dim=cfg.padded_dim, state_dim=cfg.padded_dim),
                     mode=mode, flow=FlowConfig(num_steps=cfg.num_steps), train=train)


# ------------------------------------------------------------------------------------ encoder


def pad_dims(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Zero-pad the last axis to `dim` (the action/state layout of the model)."""
    if x.shape[-1] == dim:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:-1], dim - x.shape[-1])], dim=-1)


def action_mask(batch: int, chunk: int, dim: int) -> torch.Tensor:
    """(B, H, dim) with the 2 DynReach action dims active."""
    mask = torch.zeros(batch, chunk, dim)
    mask[..., :2] = 1.0
    return mask


def normalise_state(state: Any, dim: int = 2) -> torch.Tensor:
    """Positions (B, 2) in [0, 1] -> (B, 1, dim) in [-1, 1], zero-padded."""
    x = torch.as_tensor(np.asarray(state, np.float32))
    return pad_dims((2.0 * x - 1.0).reshape(-1, 1, 2), dim)


def normalise_actions(actions: Any, dim: int = 2) -> torch.Tensor:
    return pad_dims(torch.as_tensor(np.asarray(actions, np.float32)) / V_MAX, dim)


def denormalise_actions(x: torch.Tensor) -> np.ndarray:
    return x[..., :2].detach().double().numpy() * V_MAX


class ConvEncoder(nn.Module):
    """Image + proprioception + instruction -> L tokens -> per-layer K/V (a `VLMContext`).

    Coordinate channels are appended to the image (CoordConv) so that *where* a blob is stays
    linearly readable after the strided convolutions; without them a small conv net has to learn
    positions from padding artefacts.
    """

    def __init__(self, cfg: Tier0Config) -> None:
        super().__init__()
        self.cfg = cfg
        E, n_down = cfg.encoder_width, int(math.log2(cfg.image_size // cfg.grid))
        convs: list[nn.Module] = []
        c_in = 5
        for i in range(n_down):
            c_out = E if i == n_down - 1 else 32
            convs += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GELU()]
            c_in = c_out
        self.conv = nn.Sequential(*convs[:-1])   # no activation on the token features
        self.image_pos = nn.Parameter(torch.randn(cfg.grid * cfg.grid, E) * 0.02)
        self.state_proj = nn.Linear(2, E)
        self.word = nn.Embedding(len(VOCAB), E)
        self.word_pos = nn.Parameter(torch.randn(INSTRUCTION_LENGTH, E) * 0.02)
        self.mix = nn.TransformerEncoderLayer(E, nhead=4, dim_feedforward=2 * E, dropout=0.0,
                                              batch_first=True, norm_first=True)
        kv = cfg.kv_heads * cfg.head_dim
        self.k_proj = nn.ModuleList(nn.Linear(E, kv) for _ in range(cfg.dit_layers))
        self.v_proj = nn.ModuleList(nn.Linear(E, kv) for _ in range(cfg.dit_layers))
        # Keys are normalised per head, as the VLM's cached keys are (post k_norm).
        self.k_norm = nn.ModuleList(RMSNorm(cfg.head_dim) for _ in range(cfg.dit_layers))
        ys, xs = torch.meshgrid(torch.linspace(1, -1, cfg.image_size),
                                torch.linspace(-1, 1, cfg.image_size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)

    def tokens(self, image: Any, state: Any, tokens: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed token features (B, L, E) and the prompt mask (B, L) (instruction padding off)."""
        img = torch.as_tensor(np.asarray(image))
        if img.dtype == torch.uint8:
            img = img.float() / 255.0
        if img.shape[1:] != (self.cfg.image_size, self.cfg.image_size, 3):
            raise ValueError(f"image must be (B, {self.cfg.image_size}, {self.cfg.image_size}, 3)"
                             f", got {tuple(img.shape)}")
        B = img.shape[0]
        x = torch.cat([img.permute(0, 3, 1, 2), self.coords.expand(B, -1, -1, -1)], dim=1)
        grid = self.conv(x).flatten(2).transpose(1, 2) + self.image_pos       # (B, G*G, E)
        st = self.state_proj(normalise_state(state))                            # (B, 1, E)
        ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        words = self.word(ids) + self.word_pos                                  # (B, I, E)
        h = torch.cat([grid, st, words], dim=1)                                 # (B, L, E)
        mask = torch.cat([torch.ones(B, grid.shape[1] + 1, dtype=torch.bool), ids != 0], dim=1)
        return self.mix(h, src_key_padding_mask=~mask), mask

    def context(self, feats: torch.Tensor, mask: torch.Tensor) -> VLMContext:
        """Per-layer K/V from token features (B, L, E): what the DiT attends to."""
        B, L, _ = feats.shape
        K, h = self.cfg.kv_heads, self.cfg.head_dim
        keys = tuple(norm(p(feats).view(B, L, K, h)).transpose(1, 2)
                     for p, norm in zip(self.k_proj, self.k_norm))                # (B, K, L, h)
        values = tuple(p(feats).view(B, L, K, h).transpose(1, 2) for p in self.v_proj)
        positions = torch.arange(L).expand(3, B, L)
        image_mask = torch.zeros(B, L, dtype=torch.bool)
        image_mask[:, :self.cfg.grid ** 2] = True
        return VLMContext(keys=keys, values=values, prompt_mask=mask, positions=positions,
                          vlm_layers=tuple(range(self.cfg.dit_layers)),
                          image_token_mask=image_mask)

    def forward(self, image: Any, state: Any, tokens: Any) -> VLMContext:
        return self.context(*self.tokens(image, state, tokens))


# ------------------------------------------------------------------------------------ policy


class Tier0Policy(nn.Module):
    """Conv encoder + `FlowActionExpert`. The expert's config carries the arm's mode."""

    def __init__(self, cfg: Tier0Config, arm: Arm | None = None, *, freq_coef: float = 1.0):
        super().__init__()
        from xr0lab.model.expert import FlowActionExpert

        self.cfg = cfg
        self.arm = arm
        self.encoder = ConvEncoder(cfg)
        self.expert = FlowActionExpert(xr0_config(cfg, arm, freq_coef=freq_coef))

    def context(self, obs: dict) -> VLMContext:
        return self.encoder(obs["image"], obs["state"], obs["tokens"])

    @torch.no_grad()
    def act(self, obs: dict, noise: torch.Tensor, *, prefix: Any = None, prefix_length: int = 0,
            guidance: tuple[Any, Any] | None = None, max_guidance: float = 5.0,
            num_steps: int | None = None, context: VLMContext | None = None) -> np.ndarray:
        """One chunk (B, H, 2) in world units from an observation batch and noise (B, H, 2).

        prefix: committed actions (B, >= p, 2) in world units (hard prefix, mode 'prefix').
        guidance: (committed remainder (B, R, 2), weights (H,)) for inference-time guidance.
        """
        ctx = self.context(obs) if context is None else context
        A = self.cfg.padded_dim
        state = normalise_state(obs["state"], A)
        # Inactive dims get zero noise: the action mask zeroes them at the projector input, so
        # their values never reach the active ones; only the 2 active dims are drawn (CRN).
        noise = pad_dims(noise, A)
        mask = action_mask(noise.shape[0], noise.shape[1], A)
        if guidance is not None:
            target, weights = guidance
            with torch.enable_grad():
                x = guided_sample(self.expert, ctx, state, mask, noise,
                                  normalise_actions(target, A),
                                  torch.as_tensor(np.asarray(weights, np.float32)),
                                  num_steps or self.cfg.num_steps, max_guidance)
            return denormalise_actions(x)
        pre = None if not prefix_length else normalise_actions(prefix, A)
        x = self.expert.sample(ctx, state, mask, noise=noise, num_steps=num_steps,
                               prefix=pre, prefix_length=prefix_length)
        return denormalise_actions(x)


def guided_sample(expert, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor,
                  noise: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                  num_steps: int, max_guidance: float = 5.0) -> torch.Tensor:
    """Inference-time real-time chunking (arm A2): Euler flow with a guidance term that pulls
    the one-step clean estimate toward the committed remainder.

    With xr0lab's convention (t = 0 noise, t = 1 data) the clean estimate is
    x1 = x + (1 - t) v; the correction is g = [(Y - x1) * W]^T dx1/dx (one VJP per step), added
    with weight min(beta, (1 - t) / (t r^2)), r^2 = (1 - t)^2 / (t^2 + (1 - t)^2), beta = 5
    (the guidance clip). target: (B, R, A) normalised, R <= H; weights (H,) zero past R.
    """
    B, H, A = noise.shape
    Y = torch.zeros(B, H, A)
    R = min(target.shape[1], H)
    Y[:, :R] = target[:, :R]
    W = weights.view(1, H, 1) * action_mask
    setup = expert.prepare(context, state, H)
    x = noise.clone()
    dt = 1.0 / num_steps
    for k in range(num_steps):
        t = k * dt
        tt = torch.full((B,), t)
        x = x.detach().requires_grad_(True)
        v = expert.denoise_step(setup, context, x, tt, action_mask)
        x1 = x + (1 - t) * v
        (g,) = torch.autograd.grad(x1, x, grad_outputs=(Y - x1.detach()) * W)
        r2 = (1 - t) ** 2 / (t ** 2 + (1 - t) ** 2)
        scale = max_guidance if t == 0 else min(max_guidance, (1 - t) / (t * r2))
        x = (x + dt * (v + scale * g)).detach()
    return x


# ------------------------------------------------------------------------------------ probe


def linear_probe(features: np.ndarray, targets: np.ndarray, *, train_fraction: float = 0.7,
                 ridge: float = 1e-2, seed: int = 0) -> dict:
    """Ridge regression from flattened context tokens (M, ...) to targets (M, 2); held-out R^2.

    Shows the goal is linearly readable from what the DiT attends to, so a policy that copies
    its prefix is taking a shortcut, not blind.
    """
    X = np.asarray(features, np.float64).reshape(len(features), -1)
    Y = np.asarray(targets, np.float64)
    order = np.random.default_rng(seed).permutation(len(X))
    n_train = int(train_fraction * len(X))
    tr, te = order[:n_train], order[n_train:]
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
    Xs = (X - mu) / sd
    Xtr = np.concatenate([Xs[tr], np.ones((len(tr), 1))], 1)
    coef = np.linalg.solve(Xtr.T @ Xtr + ridge * len(tr) * np.eye(Xtr.shape[1]), Xtr.T @ Y[tr])
    pred = np.concatenate([Xs[te], np.ones((len(te), 1))], 1) @ coef
    ss_res = ((pred - Y[te]) ** 2).sum()
    ss_tot = ((Y[te] - Y[te].mean(0)) ** 2).sum()
    return {"r2": float(1 - ss_res / ss_tot), "rmse": float(np.sqrt(((pred - Y[te]) ** 2)
                                                                    .sum(1).mean())),
            "n_train": int(len(tr)), "n_test": int(len(te))}


# ------------------------------------------------------------------------------------ tier 1


class Tier1Policy:
    """The real tiny preset (`XR0Model(preset("tiny"))`) as a DynReach chunk policy.

    DynReach frames (upsampled to a multiple of 32 px) go through the offline processor with the
    released one-view prompt; the 2-D state and action live in the first two of the model's 32
    dims (the action mask switches the others off). Integration path only: untrained weights
    unless the caller loads some; the sweep uses tier 0.
    """

    def __init__(self, model=None, *, dit_layers: int | None = None,
                 vlm_layers: int | None = None, image_size: int = 64, mode: str = "xr0-async",
                 seed: int = 0) -> None:
        import xr0lab
        from xr0lab.io.examples import EXAMPLE_ROBOT, example_processor

        if model is None:
            torch.manual_seed(seed)
            model = xr0lab.XR0Model(xr0lab.preset("tiny", mode=mode, chunk_length=16,
                                                  dit_layers=dit_layers, vlm_layers=vlm_layers))
        self.model = model.eval()
        self.robot = EXAMPLE_ROBOT
        self.processor = example_processor(model.config.action.chunk_length,
                                           model.config.action.action_dim)
        self.image_size = image_size

    def inputs(self, obs: dict) -> dict:
        img = np.asarray(obs["image"])
        rep = max(1, self.image_size // img.shape[1])
        img = img.repeat(rep, axis=1).repeat(rep, axis=2)
        B = img.shape[0]
        A = self.model.config.action.action_dim
        state = np.zeros((B, 1, A), np.float32)
        state[:, 0, :2] = 2 * np.asarray(obs["state"], np.float32) - 1
        words = [" ".join(VOCAB[i] for i in row if i) for row in np.asarray(obs["tokens"])]
        out = self.processor(images=[[im] for im in img], instruction=words or
                             [INSTRUCTIONS["S1"]] * B, state=state, robot_type=self.robot,
                             prompt_style="release-1view")
        keep = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "state")
        inputs = {k: out[k] for k in keep}
        mask = torch.zeros(B, self.model.config.action.chunk_length, A)
        mask[..., :2] = 1
        inputs["action_mask"] = mask
        return inputs

    def __call__(self, obs: dict, noise: torch.Tensor, *, prefix: Any = None,
                 prefix_length: int = 0) -> np.ndarray:
        inputs = self.inputs(obs)
        B, H = noise.shape[:2]
        A = self.model.config.action.action_dim
        full = torch.zeros(B, H, A)
        full[..., :2] = noise
        pre = None
        if prefix_length:
            pre = torch.zeros(B, prefix_length, A)
            pre[..., :2] = normalise_actions(prefix)[:, :prefix_length]
        out = self.model.predict_actions(**inputs, noise=full, prefix=pre,
                                         prefix_length=prefix_length or None)
        return denormalise_actions(out[..., :2])

    def loss(self, batch: dict, generator: torch.Generator | None = None):
        """The xr0-async training objective on a DynReach batch (`ExpertDataset.batch`)."""
        inputs = self.inputs(batch)
        B, H = np.asarray(batch["actions"]).shape[:2]
        A = self.model.config.action.action_dim
        actions = torch.zeros(B, H, A)
        actions[..., :2] = normalise_actions(batch["actions"])
        return self.model.compute_loss(**inputs, actions=actions, generator=generator)


def tier1_smoke(*, steps: int = 2, batch_size: int = 2, episodes: int = 2, ticks: int = 24,
                delay: int = 3, seed: int = 0, dit_layers: int | None = 2,
                vlm_layers: int | None = 2) -> dict:
    """Tier 1 end to end, minimally: a few xr0-async training steps of the real tiny preset on
    S1 expert data, then S1 episodes through the runtime's virtual clock (prefix mode, p = d).

    Returns the losses, the timeline's tick counts and the executed actions. This is an
    integration check of the full-model path, not a benchmark result.
    """
    from xr0lab.dynreach.data import generate, split_seeds
    from xr0lab.dynreach.world import DynReach, WorldConfig
    from xr0lab.runtime import ChunkExecutor, ExecutorConfig

    policy = Tier1Policy(dit_layers=dit_layers, vlm_layers=vlm_layers, seed=seed)
    data = generate("S1", split_seeds("train", 2))
    opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(seed)
    losses = []
    policy.model.train()
    for step in range(steps):
        idx = np.random.default_rng((seed, step)).integers(0, len(data), batch_size)
        out = policy.loss(data.batch(idx, 32), generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    policy.model.eval()
    env = DynReach(WorldConfig("S1", image_size=32))
    env.reset(np.arange(episodes))
    calls = []

    def run_policy(obs, prefix, prefix_length):
        noise = torch.as_tensor(np.random.default_rng((seed, len(calls))).standard_normal(
            (episodes, 16, 2)), dtype=torch.float32)
        calls.append(prefix_length)
        with torch.no_grad():
            return policy(obs, noise, prefix=prefix, prefix_length=prefix_length)

    ex = ChunkExecutor(run_policy, ExecutorConfig(16, 8, delay=delay, prefix_length=delay))
    for _ in range(ticks):
        env.step(ex.step(env.observe))
    tl = ex.timeline()
    return {"losses": losses, "counts": tl.counts(), "prefix_lengths": calls,
            "actions": env.actions[:, :ticks]}
