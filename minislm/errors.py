"""One exception family for everything minislm refuses.

Every message says what was expected, what was found, and in which file,
tensor or field, so a user can fix the input without a debugger.
"""


class MinislmError(Exception):
    """Base class: the CLI prints its message and exits non-zero."""


class CheckpointError(MinislmError):
    """A checkpoint file or folder is missing, malformed, unsafe or inconsistent."""


class ConfigError(MinislmError):
    """A config.json field (or a pipeline/CLI option) is missing or impossible."""


class TokenizerError(MinislmError):
    """A tokenizer file does not parse or does not match the model."""


class InputError(MinislmError):
    """Bad runtime input: token ids out of range, wrong array shape, empty corpus."""


class NumericalError(MinislmError):
    """NaN/Inf in weights or activations, or a factorisation that failed."""


class ResourceError(MinislmError):
    """The work needs more memory (or disk) than is available."""
