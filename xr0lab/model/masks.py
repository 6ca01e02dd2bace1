"""DiT attention masks as pure functions (docs/architecture.md §4). True = may attend.

Axes: B batch, L prompt (VLM) length, T action-chunk length, p prefix length, S = 2 + T DiT
tokens [sink, state, a_0 .. a_{T-1}]. Rows are DiT queries; columns are [L VLM-cache keys | S DiT
keys].

Who attends whom, in one line each:
- every DiT row sees the real (unpadded) prompt tokens;
- sink/state rows are causal among {sink, state} and never see actions;
- action rows always see sink and state;
- action i sees action j per the action-attention kind:
  causal (release) j <= i; band (the Λ mask) i - w <= j <= i; full: all j;
  hard_block: causal, and rows i >= b = p + w see only columns j >= b (p > 0 only).

>>> action_attention_mask(4, "band", window=1).int().tolist()
[[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
>>> action_attention_mask(4, "hard_block", window=1, prefix_length=1).int().tolist()
[[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xr0lab.config import ActionAttention

NUM_SPECIAL_TOKENS = 2  # sink, state


@dataclass(frozen=True)
class TokenLayout:
    """Named column slices of one DiT attention row: [vlm | sink | state | prefix | noisy]."""

    prompt_length: int
    chunk_length: int
    prefix_length: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.prefix_length <= self.chunk_length:
            raise ValueError(f"prefix_length must be in [0, chunk_length={self.chunk_length}], "
                             f"got {self.prefix_length}")

    @property
    def num_dit_tokens(self) -> int:
        return NUM_SPECIAL_TOKENS + self.chunk_length

    @property
    def num_keys(self) -> int:
        return self.prompt_length + self.num_dit_tokens

    @property
    def vlm(self) -> slice:
        return slice(0, self.prompt_length)

    @property
    def sink(self) -> slice:
        return slice(self.prompt_length, self.prompt_length + 1)

    @property
    def state(self) -> slice:
        return slice(self.prompt_length + 1, self.prompt_length + 2)

    @property
    def actions(self) -> slice:
        start = self.prompt_length + NUM_SPECIAL_TOKENS
        return slice(start, start + self.chunk_length)

    @property
    def prefix(self) -> slice:
        start = self.prompt_length + NUM_SPECIAL_TOKENS
        return slice(start, start + self.prefix_length)

    @property
    def noisy(self) -> slice:
        start = self.prompt_length + NUM_SPECIAL_TOKENS + self.prefix_length
        return slice(start, self.prompt_length + self.num_dit_tokens)

    def segments(self) -> dict[str, slice]:
        """Key-axis segments in order, for plots and attention-mass tables."""
        return {"vlm": self.vlm, "sink": self.sink, "state": self.state,
                "prefix": self.prefix, "noisy": self.noisy}

    def query_segments(self) -> dict[str, slice]:
        """Query-axis (DiT rows) segments: the key segments shifted by -L, without vlm."""
        shift = self.prompt_length
        return {name: slice(s.start - shift, s.stop - shift)
                for name, s in self.segments().items() if name != "vlm"}


def action_attention_mask(chunk_length: int, kind: ActionAttention, window: int | None = None,
                          prefix_length: int = 0) -> torch.Tensor:
    """(T, T) bool: may action i attend to action j.

    >>> action_attention_mask(3, "causal").int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    T = chunk_length
    if T < 1:
        raise ValueError(f"chunk_length must be >= 1, got {T}")
    if not 0 <= prefix_length <= T:
        raise ValueError(f"prefix_length must be in [0, chunk_length={T}], got {prefix_length}")
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    if kind == "full":
        return torch.ones(T, T, dtype=torch.bool)
    if kind == "causal":
        return j <= i
    if kind not in ("band", "hard_block"):
        raise ValueError(f"unknown action-attention kind {kind!r}; expected causal, band, full "
                         "or hard_block")
    if window is None or window < 0:
        raise ValueError(f"{kind} needs a window >= 0, got {window}")
    if kind == "band":
        return (j <= i) & (j >= i - window)
    # hard_block: with no prefix there is nothing to block, so it is plain causal.
    causal = j <= i
    if prefix_length == 0:
        return causal
    boundary = prefix_length + window
    return causal & ((i < boundary) | (j >= boundary))


def sample_hidden_prefix(prefix_length: int, *, keep_last: int = 2, probability: float = 0.5,
                         generator: torch.Generator | None = None,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """(p,) bool: which prefix columns are hidden from noisy rows (training-only, xr0-async).

    Each of the first p - keep_last columns is hidden independently with `probability`; the last
    `keep_last` are always kept. One draw per forward call, shared by the batch (as released).
    """
    hidden = torch.zeros(prefix_length, dtype=torch.bool, device=device)
    n = prefix_length - keep_last
    if n > 0:
        draw = torch.rand(n, generator=generator, device=generator.device if generator else device)
        hidden[:n] = (draw < probability).to(hidden.device)
    return hidden


def dit_attention_mask(prompt_mask: torch.Tensor, chunk_length: int, *, kind: ActionAttention,
                       window: int | None = None, prefix_length: int = 0,
                       hidden_prefix: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2 + T, L + 2 + T) bool mask for one DiT forward.

    prompt_mask: (B, L), nonzero where the prompt token is real.
    hidden_prefix: optional (p,) bool, prefix columns hidden from noisy rows (prefix hiding).
    """
    if prompt_mask.dim() != 2:
        raise ValueError(f"prompt_mask must be (B, L), got shape {tuple(prompt_mask.shape)}")
    B, L = prompt_mask.shape
    T, p = chunk_length, prefix_length
    S = NUM_SPECIAL_TOKENS + T
    dit = torch.zeros(S, S, dtype=torch.bool)
    dit[:2, :2] = torch.tensor([[True, False], [True, True]])  # sink/state: causal, no actions
    dit[2:, :2] = True  # actions always see sink and state
    dit[2:, 2:] = action_attention_mask(T, kind, window, p)
    if hidden_prefix is not None:
        if hidden_prefix.shape != (p,):
            raise ValueError(f"hidden_prefix must have shape ({p},), got {tuple(hidden_prefix.shape)}")
        noisy_rows = slice(2 + p, S)
        dit[noisy_rows, 2:2 + p] &= ~hidden_prefix.cpu()[None, :]
    dit = dit.to(prompt_mask.device)
    vlm = prompt_mask.bool()[:, None, :].expand(B, S, L)
    return torch.cat([vlm, dit[None].expand(B, S, S)], dim=-1)
