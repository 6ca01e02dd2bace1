"""Where a checkpoint directory comes from: a local path, or a hub id ("Org/Name") downloaded only
when the Hugging Face Hub answers. Offline, it fails at once with an error that says so."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError
from xr0lab.io.hf_config import CONFIG_NAME

# What a hub download needs; the released repos hold nothing else we read. The processor needs
# no weights.
PROCESSOR_FILES = ("*.json", "*.jinja", "*.txt", "tokenizer*", "vocab*", "merges*")
CHECKPOINT_FILES = (*PROCESSOR_FILES, "*.safetensors")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _hub_reachable(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


# transformers' from_pretrained keywords that say where the files come from; `hub_options` hands
# them to `resolve_checkpoint_dir`.
HUB_OPTIONS = ("revision", "subfolder", "cache_dir", "token", "local_files_only",
               "force_download")
# Keywords transformers' Auto classes (or the released instructions) pass that change nothing
# here: xr0lab never runs code from a checkpoint, so trust_remote_code has nothing to allow.
_NO_EFFECT = ("trust_remote_code", "_from_auto", "_commit_hash", "code_revision",
              "resume_download", "user_agent")


def hub_options(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """Pop transformers' file-location keywords from `kwargs` (returned, for
    `resolve_checkpoint_dir`) and drop those without effect here (trust_remote_code, the Auto
    classes' private ones). A PEFT adapter (`adapter_kwargs` naming one) is refused by name."""
    options = {key: kwargs.pop(key) for key in HUB_OPTIONS if key in kwargs}
    for key in _NO_EFFECT:
        kwargs.pop(key, None)
    if kwargs.pop("proxies", None) is not None:
        raise TypeError(f"{where}: proxies= is not supported (huggingface_hub >= 1.0 dropped it); "
                        "set HTTPS_PROXY in the environment instead")
    adapter = kwargs.pop("adapter_kwargs", None) or {}
    if adapter.get("_adapter_model_path"):
        raise CheckpointError(f"{where}: {adapter['_adapter_model_path']} holds a PEFT adapter "
                              "(adapter_config.json); xr0lab loads full XR-0 checkpoints only")
    return options


def _download(repo_id: str, timeout: float = 3.0, *,
              files: tuple[str, ...] = CHECKPOINT_FILES, revision: str | None = None,
              cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
              local_files_only: bool = False, force_download: bool = False) -> Path:
    """A hub snapshot: a cached copy if there is one, else a download when the hub answers.
    Never waits on an unreachable network for more than `timeout` seconds."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as err:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory, and huggingface_hub (needed to download it "
            "from the Hub) is not installed") from err
    where = dict(revision=revision, cache_dir=cache_dir, token=token)
    if not force_download:
        with contextlib.suppress(Exception):  # no cached snapshot: fall through to the network
            return Path(snapshot_download(repo_id, allow_patterns=list(files),
                                          local_files_only=True, **where))
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1", "true", "yes", "on")
    if offline or local_files_only:
        why = "HF_HUB_OFFLINE is set" if offline else "local_files_only=True"
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory and the Hugging Face Hub is disabled "
            f"({why}) with no cached snapshot; pass a local checkpoint directory")
    if not _hub_reachable(constants.ENDPOINT, timeout):
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory and the Hugging Face Hub ({constants.ENDPOINT}) "
            "cannot be reached (offline?); download the checkpoint elsewhere and pass its local "
            "directory")
    return Path(snapshot_download(repo_id, allow_patterns=list(files),
                                  force_download=force_download, **where))


def resolve_checkpoint_dir(path: str | os.PathLike, *, subfolder: str | None = None,
                           files: tuple[str, ...] = CHECKPOINT_FILES, **hub: Any) -> Path:
    """A local checkpoint directory; a hub id ("Org/Name", not a local path) is downloaded only
    when the hub is reachable, and then only `files` (glob patterns). `subfolder` and the other
    `HUB_OPTIONS` mean what they mean in transformers' from_pretrained."""
    unknown = set(hub) - set(HUB_OPTIONS)
    if unknown:
        raise TypeError(f"resolve_checkpoint_dir got unknown options {sorted(unknown)}; "
                        f"expected some of {', '.join(HUB_OPTIONS)}")
    if subfolder:
        return _subfolder(resolve_checkpoint_dir(path, files=files, **hub), subfolder)
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{local} is a file; pass the checkpoint directory that holds "
                              f"{CONFIG_NAME} and the weights")
    text = os.fspath(path)
    if isinstance(path, str) and _HUB_ID_RE.match(text):
        return _download(text, files=files, **hub)
    raise CheckpointNotFoundError(f"checkpoint directory {local} does not exist")


def _subfolder(directory: Path, subfolder: str) -> Path:
    inner = directory / subfolder
    if not inner.is_dir():
        raise CheckpointNotFoundError(f"subfolder {subfolder!r} does not exist in {directory}")
    return inner


__all__ = ["CHECKPOINT_FILES", "HUB_OPTIONS", "PROCESSOR_FILES", "hub_options",
           "resolve_checkpoint_dir"]
