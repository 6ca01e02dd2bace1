"""The DynReach instructions: a tiny fixed vocabulary, one constant sentence per scenario.

The instruction never changes within an episode, so a perturbation is visible only in pixels.
"""

from __future__ import annotations

import numpy as np

# Instruction vocabulary: tiny and fixed so token ids never change between runs.
VOCAB: tuple[str, ...] = ("<pad>", "reach", "the", "target", "go", "to", "matching", "lamp",
                          "around", "wall", "follow", "moving")
TOKEN_IDS: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
INSTRUCTION_LENGTH = 8
INSTRUCTIONS: dict[str, str] = {
    "S1": "reach the target",
    "S2": "go to the target matching the lamp",  # constant: the goal changes only in pixels
    "S3": "reach the target around the wall",
    "S4": "follow the moving target",
    "S1E": "reach the target",  # S1's instruction: the variant differs only in timing
    "S1M": "reach the target",  # likewise: S1's scene and words, the jumps come while moving
}


def tokenize(text: str, length: int = INSTRUCTION_LENGTH) -> np.ndarray:
    """Instruction text -> int64 token ids, right-padded with 0 (`<pad>`).

    >>> tokenize("reach the target")
    array([1, 2, 3, 0, 0, 0, 0, 0])
    """
    words = text.lower().split()
    unknown = [w for w in words if w not in TOKEN_IDS]
    if unknown:
        raise ValueError(f"tokenize: words {unknown} are not in the DynReach vocabulary {VOCAB}")
    if len(words) > length:
        raise ValueError(f"tokenize: {len(words)} words exceed the instruction length {length}")
    ids = np.zeros(length, np.int64)
    ids[:len(words)] = [TOKEN_IDS[w] for w in words]
    return ids


def instruction_tokens(scenario: str, n: int) -> np.ndarray:
    """(n, INSTRUCTION_LENGTH) int64: the scenario's constant instruction, one row per episode."""
    return np.broadcast_to(tokenize(INSTRUCTIONS[scenario]), (n, INSTRUCTION_LENGTH)).copy()

