"""Soft prefix weights for the "guided" strategy (inference-time real-time chunking)."""

from __future__ import annotations

import math

import numpy as np


def guidance_weights(chunk_length: int, delay: int, span: int) -> np.ndarray:
    """Soft prefix weights for inference-time guidance, shape (H,) float32 (benchmark arm A2).

    1 on [0, d) (executed before the chunk arrives), exponential decay on [d, span), 0 from span
    (= H - s in steady state: actions nobody has committed to). The decay is the soft-masking
    schedule of real-time chunking: c * (e^c - 1) / (e - 1) with c = (span - i) / (span - d + 1).
    """
    if not 0 <= span <= chunk_length or delay < 0:
        raise ValueError(f"need 0 <= span <= H and delay >= 0, got H={chunk_length}, "
                         f"span={span}, delay={delay}")
    i = np.arange(chunk_length, dtype=np.float64)
    c = (span - i) / max(span - delay + 1, 1)
    w = np.where(i < delay, 1.0, c * np.expm1(c) / math.expm1(1.0))
    return np.where(i < span, w, 0.0).astype(np.float32)
