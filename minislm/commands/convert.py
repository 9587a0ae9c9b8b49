"""minislm convert: a GGUF file (llama.cpp, Ollama, LM Studio) as a Hugging Face folder."""
from __future__ import annotations

from . import add_overwrite

NAME = "convert"
HELP = "convert IN.gguf (llama, gemma3, gpt2; quantized tensors dequantized to float32) " \
       "into an HF folder --out"


def add_arguments(p):
    """Declare `minislm convert`'s options on the subparser p."""
    p.add_argument("gguf", metavar="IN.gguf", help="GGUF file to read")
    p.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, "
                                                "tokenizer.json, tokenizer_config.json)")
    add_overwrite(p)


def run(args) -> int:
    """Read IN.gguf and write it as a Hugging Face folder at --out; 0 on success."""
    import json
    from pathlib import Path

    import minislm
    from minislm.checkpoint import atomic_write_text
    from minislm.errors import InputError
    from minislm.gguf.convert import tokenizer_config
    from minislm.outputs import check_output, mark_output
    if not str(args.gguf).lower().endswith(".gguf"):
        raise InputError(f"{args.gguf}: expected a .gguf file")
    check_output(args.out, [args.gguf], args.overwrite)
    model = minislm.load(args.gguf)
    out = minislm.save(model, mark_output(args.out, NAME))
    if model.tokenizer is not None:   # the chat template and special tokens the file states
        atomic_write_text(Path(out) / "tokenizer_config.json",
                          json.dumps(tokenizer_config(args.gguf), indent=2) + "\n")
    print(f"wrote {out} ({model.config.family}, {model.num_params():,} parameters)")
    return 0
