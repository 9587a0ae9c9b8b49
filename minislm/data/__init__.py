"""Data minislm makes or reads itself: nothing here downloads anything.

- :mod:`minislm.data.corpus` -- the default corpus (pydoc help topics and
  stdlib docstrings of the running CPython, split by module), and loading of
  any UTF-8 text file or folder of ``.txt`` files.
- :mod:`minislm.data.tasks` -- the in-vehicle tool-call data set of the
  voice-assistant thesis (six categories, 80/10/10), rendering as
  ``User: ...\\nAssistant: ...`` and ``parse_tool_calls`` for evaluation.
- :mod:`minislm.data.requirements` -- ISO-style "The system shall ..." sentences
  of the GPT-2 slides, with a held-out test split.
- :mod:`minislm.data.tokenizer_train` -- the byte-level BPE tokenizer of the
  shipped models, saved so transformers' ``AutoTokenizer`` loads it.
- :mod:`minislm.data.examples` -- prompt/response examples for fine-tuning and
  distillation (a task or a file) and their padded batches.
- :mod:`minislm.data.files` -- reading UTF-8 text and JSONL files with errors
  that name the file and line.
"""
from .corpus import (corpus_documents, corpus_stats, corpus_text, default_corpus, document_split,
                     load_text_corpus, split_text)
from .requirements import SLIDE_PROMPTS, requirement_sentences, requirements_dataset
from .tasks import (CATEGORIES, TOOLS, format_tool_calls, parse_tool_calls, render_example, render_prompt,
                    response_category, split_example, task_texts, toolcall_dataset, toolcall_examples)
from .tokenizer_train import EOS_TOKEN, PAD_TOKEN, save_tokenizer, train_default_tokenizer, train_tokenizer

__all__ = [
    "CATEGORIES", "EOS_TOKEN", "PAD_TOKEN", "SLIDE_PROMPTS", "TOOLS", "corpus_documents", "corpus_stats",
    "corpus_text", "default_corpus", "document_split", "format_tool_calls", "load_text_corpus", "parse_tool_calls",
    "render_example", "render_prompt", "requirement_sentences", "requirements_dataset", "response_category",
    "save_tokenizer", "split_example", "split_text", "task_texts", "toolcall_dataset", "toolcall_examples",
    "train_default_tokenizer", "train_tokenizer",
]
