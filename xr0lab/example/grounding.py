"""A grounding objective through the language-model head: "where is the target?" answered as
coordinate tokens, XR-0's vision-language co-training in miniature (stage 1, optional).

The prompt shows one DynReach frame and asks for the target; the answer is "(xx,yy)", the goal's
position in hundredths of the image side, as Qwen digit tokens. The loss is cross-entropy on the
answer tokens with logits over the answer's alphabet (digits, brackets, comma) only: the tied
head's other 151,900 rows never score, which costs a fraction of a full-vocabulary softmax and
asks the same question. Measured (docs/example_model.md): in 500 steps of this objective alone
the tens digit stays at chance, while a regression read from the image tokens' own hidden states
reaches R^2 0.95 in 200: routing the image to the answer position is the slow part.
"""

from __future__ import annotations

import numpy as np
import torch

from xr0lab.example.inputs import patchify

QUESTION = "Where is the target?"


def answer_text(goal: np.ndarray) -> list[str]:
    """Goals (B, 2) in [0, 1] -> "(xx,yy)" in hundredths, clipped to 00..99.

    >>> answer_text(np.array([[0.073, 0.5], [1.0, 0.0]]))
    ['(07,50)', '(99,00)']
    """
    g = np.clip(np.round(np.asarray(goal, np.float64) * 100), 0, 99).astype(int)
    return ["(%02d,%02d)" % (x, y) for x, y in g]


class GoalReadout(torch.nn.Module):
    """Stage 1's auxiliary read-out: per paired VLM layer, a linear map from the values at the
    image positions (exactly what the DiT attends to there) to the target's position in [-1, 1].

    A standard auxiliary loss, not part of XR-0 and not part of the checkpoint: it gives the
    vision path a direct signal where the flow loss alone gives a faint one (docs/example_model.md
    §3), and is dropped after stage 1.
    """

    PREFIX = "goal_readout."

    def __init__(self, num_layers: int, features: int) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(features, 2) for _ in range(num_layers))

    @classmethod
    def for_model(cls, model, image_size: int) -> "GoalReadout":
        vlm = model.config.vlm
        tokens = (image_size // 32) ** 2
        return cls(model.config.dit.num_layers, tokens * vlm.num_kv_heads * vlm.head_dim)

    def loss(self, context, goal: np.ndarray) -> torch.Tensor:
        mask = context.image_token_mask                                  # (B, L)
        b = int(mask.shape[0])
        target = torch.as_tensor(2.0 * np.asarray(goal, np.float32) - 1.0)
        errors = [((head(v.transpose(1, 2)[mask].reshape(b, -1)) - target) ** 2).mean()
                  for head, v in zip(self.heads, context.values)]
        return torch.stack(errors).mean()


class GroundingTask:
    def __init__(self) -> None:
        from xr0lab.io.examples import example_processor

        self.tokenizer = example_processor(30).tokenizer
        alphabet = self.tokenizer("0123456789", add_special_tokens=False)["input_ids"]
        alphabet += self.tokenizer("(,)", add_special_tokens=False)["input_ids"]
        for ch in "(,)":
            alphabet += self.tokenizer(ch, add_special_tokens=False)["input_ids"]
        self.alphabet = torch.tensor(sorted(set(alphabet)))

    def prompt(self, image_tokens: int) -> list[int]:
        text = ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * image_tokens
                + f"<|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, goals: np.ndarray, image_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids (B, L), labels (B, L) with -100 outside the answer)."""
        q = self.prompt(image_tokens)
        rows = [q + self.tokenizer(a, add_special_tokens=False)["input_ids"]
                for a in answer_text(goals)]
        if len({len(r) for r in rows}) != 1:
            raise ValueError("grounding answers tokenized to different lengths")
        ids = torch.tensor(rows)
        labels = torch.full_like(ids, -100)
        labels[:, len(q):] = ids[:, len(q):]
        if not torch.isin(ids[:, len(q):], self.alphabet).all():
            raise ValueError("a grounding answer token lies outside the answer alphabet")
        return ids, labels

    def loss(self, model, data, index: np.ndarray, image_size: int) -> torch.Tensor:
        from xr0lab.model.vlm import _accepts, mm_token_type_ids, prompt_positions

        b = data.batch(index, image_size)
        ids, labels = self.encode(data.goal[index], (image_size // 32) ** 2)
        pixel_values, grid = patchify(b["image"])
        vlm = model.vlm
        mask = torch.ones_like(ids)
        kwargs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixel_values,
                      image_grid_thw=grid,
                      position_ids=prompt_positions(vlm, ids, mask, grid))
        if _accepts(type(vlm.model).forward, "mm_token_type_ids"):
            kwargs["mm_token_type_ids"] = mm_token_type_ids(ids)
        hidden = vlm.model(**kwargs).last_hidden_state
        scored = labels[:, 1:] != -100
        logits = hidden[:, :-1][scored] @ vlm.lm_head.weight[self.alphabet].T
        target = torch.searchsorted(self.alphabet, labels[:, 1:][scored])
        return torch.nn.functional.cross_entropy(logits, target)
