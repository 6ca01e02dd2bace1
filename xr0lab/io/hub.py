"""Where a checkpoint directory comes from: a local path, or a hub id ("Org/Name") downloaded only
when the Hugging Face Hub answers. Offline, it fails at once with an error that says so."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError
from xr0lab.io.hf_config import CONFIG_NAME

# What a hub download needs; the released repos hold nothing else we read.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "tokenizer*", "vocab*", "merges*"]
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _hub_reachable(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _download(repo_id: str, timeout: float = 3.0) -> Path:
    """A hub snapshot: a cached copy if there is one, else a download when the hub answers.
    Never waits on an unreachable network for more than `timeout` seconds."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as err:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory, and huggingface_hub (needed to download it "
            "from the Hub) is not installed") from err
    with contextlib.suppress(Exception):  # no cached snapshot: fall through to the network
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1", "true", "yes", "on")
    if offline:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory and the Hugging Face Hub is disabled "
            "(HF_HUB_OFFLINE is set) with no cached snapshot; pass a local checkpoint directory")
    if not _hub_reachable(constants.ENDPOINT, timeout):
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory and the Hugging Face Hub ({constants.ENDPOINT}) "
            "cannot be reached (offline?); download the checkpoint elsewhere and pass its local "
            "directory")
    return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A local checkpoint directory; a hub id ("Org/Name", not a local path) is downloaded only
    when the hub is reachable."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{local} is a file; pass the checkpoint directory that holds "
                              f"{CONFIG_NAME} and the weights")
    text = os.fspath(path)
    if isinstance(path, str) and _HUB_ID_RE.match(text):
        return _download(text)
    raise CheckpointNotFoundError(f"checkpoint directory {local} does not exist")


__all__ = ["resolve_checkpoint_dir"]
