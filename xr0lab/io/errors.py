"""The errors raised when a checkpoint is missing or does not match the released format."""


class CheckpointError(ValueError):
    """A checkpoint that does not match the model or the released format; the message says how."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path (and no hub download possible)."""


__all__ = ["CheckpointError", "CheckpointNotFoundError"]
