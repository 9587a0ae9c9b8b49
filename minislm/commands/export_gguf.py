"""minislm export-gguf: write a GGUF file (with tokenizer metadata) that llama.cpp runs."""
from __future__ import annotations

from . import add_overwrite

NAME = "export-gguf"
HELP = ("export a GPT-2, LLaMA or Gemma 3 checkpoint to GGUF "
        "(f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1)")


def add_arguments(p):
    """Declare `minislm export-gguf`'s options on the subparser p."""
    from minislm.quant.gguf_export import EXPORT_TYPES
    p.add_argument("--model", required=True, help="HF checkpoint folder")
    p.add_argument("--type", choices=EXPORT_TYPES, default="f16", help="tensor type (default f16)")
    p.add_argument("--out", required=True, help="output .gguf file")
    p.add_argument("--name", default=None, help="general.name (default: the folder name)")
    p.add_argument("--exact", action="store_true",
                   help="refuse (instead of warning) when quantized weights are not on the "
                        "type's grid and would be rounded again (see quantize --grid)")
    add_overwrite(p)


def run(args) -> int:
    """Write --model as a GGUF file of tensor type --type at --out; 0 on success."""
    import sys
    import warnings

    import minislm
    from minislm.outputs import check_output_file
    from minislm.quant.gguf_export import export_gguf
    check_output_file(args.out, [args.model], args.overwrite, magic=b"GGUF")
    model = minislm.load(args.model)
    if model.tokenizer is None:
        print("note: the checkpoint has no tokenizer; the GGUF file holds no vocabulary "
              "(llama.cpp can evaluate token ids but not text)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, size = export_gguf(model, args.out, args.type, args.name, exact=args.exact)
    for w in caught:
        print(f"minislm: warning: {w.message}", file=sys.stderr)
    print(f"wrote {path} ({size:,} bytes, {args.type})")
    return 0
