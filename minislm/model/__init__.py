"""The model as data: a config, a dict of arrays with the checkpoint's names, a tokenizer."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import Config


@dataclasses.dataclass
class Model:
    """A model as data: a config, `params` (checkpoint name -> array or stored weight),
    a tokenizer and the checkpoint's name prefix."""
    config: Config
    params: dict                     # checkpoint tensor name -> np.ndarray (checkpoint layout)
    tokenizer: object = None         # tokenizers.Tokenizer, or None
    prefix: str = ""                 # "transformer." / "" for GPT-2, "model." for LLaMA
    path: Path | None = None         # folder it was loaded from (never written to)
    extra_config: dict = dataclasses.field(default_factory=dict)   # merged into config.json
    extra_tensors: dict = dataclasses.field(default_factory=dict)  # saved beside (e.g. masks)

    @property
    def dtype(self):
        """The dtype of the first plain array in `params` (float32 unless loaded otherwise)."""
        return next(v.dtype for v in self.params.values() if isinstance(v, np.ndarray))

    def num_params(self) -> int:
        """Σ numel over every tensor in `params` (stored weights count their logical shape)."""
        return int(sum(int(np.prod(v.shape)) for v in self.params.values()))

    def replace(self, **changes) -> "Model":
        """A new Model sharing unchanged arrays; params given here replace the dict."""
        return dataclasses.replace(self, **changes)
