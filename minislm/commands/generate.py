"""minislm generate: continue a prompt, streaming text as it is produced."""
import sys

import numpy as np

from . import options

NAME = "generate"
HELP = "generate text from a prompt with a checkpoint folder"


def add_arguments(p):
    """Declare `minislm generate`'s options on the subparser p."""
    p.add_argument("--model", required=True, help="HF checkpoint folder")
    p.add_argument("--prompt", required=True, type=options.text)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=options.seed, default=None)
    p.add_argument("--kv-cache", choices=("float32", "int8"), default="float32",
                   help="KV cache storage: float32, or int8 with one scale per (head, position) "
                        "(about 3.6x less cache memory)")


def run(args) -> int:
    """Continue --prompt with --model, streaming the new text to stdout; 0 on success."""
    import minislm
    from minislm.tokenizer import decode, encode
    model = minislm.load(args.model)
    prompt = encode(model.tokenizer, args.prompt)
    if not prompt:
        from minislm.errors import InputError
        raise InputError("--prompt encodes to zero tokens")
    new_ids, shown = [], ""
    sys.stdout.write(args.prompt)

    def stream(step, tok):
        nonlocal shown
        new_ids.append(int(tok[0]))
        text = decode(model.tokenizer, new_ids)
        if not text.endswith("\ufffd"):  # wait until a multi-byte character is complete
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text

    cache = None
    if args.kv_cache == "int8":
        from minislm.quant.kv_cache import Int8KVCache
        cache = Int8KVCache()
    try:
        minislm.generate(model, np.array([prompt]), args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         seed=args.seed, on_token=stream, cache=cache, check_numerics=True)
    finally:
        sys.stdout.write("\n")      # an error (overflowing activations, say) gets its own line
        sys.stdout.flush()
    return 0
