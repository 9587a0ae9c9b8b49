"""minislm finetune: full fine-tuning (an HF folder) or LoRA (a PEFT adapter folder)."""
from __future__ import annotations

import json
import time

from . import add_overwrite, options

NAME = "finetune"
HELP = "fine-tune a checkpoint on toolcall / requirements / a file: full, or LoRA adapters"


def add_arguments(p):
    """Declare `minislm finetune`'s options on the subparser p."""
    p.add_argument("--model", required=True, help="HF checkpoint folder")
    p.add_argument("--data", required=True,
                   help="'toolcall', 'requirements', a JSONL of prompt/response (or text) rows, "
                        "or a plain-text file")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite(p)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 3e-4 full, 1e-3 LoRA)")
    p.add_argument("--seed", type=options.seed, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-len", type=int, default=None,
                   help="tokens per example (default: the model's max_position)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (default: 1 for models under 20 M parameters, whose "
                        "matrices are too small to share; else the BLAS default)")
    p.add_argument("--lora-rank", type=int, default=None,
                   help="train LoRA adapters of this rank instead of every weight")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA α (default 2·rank)")
    p.add_argument("--lora-dropout", type=float, default=0.1)
    p.add_argument("--targets", default=None,
                   help="comma-separated module names (default q_proj,v_proj for LLaMA, "
                        "c_attn for GPT-2)")
    p.add_argument("--merge", action="store_true",
                   help="with LoRA: write the merged HF folder instead of the adapter")
    p.add_argument("--add-tool-tokens", action="store_true",
                   help="add <tool_call> and </tool_call> as single tokens first, resizing "
                        "the embedding and LM head (with LoRA these are trained in full and "
                        "saved as PEFT modules_to_save, with the tokenizer)")


def run(args) -> int:
    """Check the numbers, load, fine-tune (full or LoRA) and write the folder; 0 on success."""
    import minislm
    from minislm.adapt import finetune as ft
    from minislm.adapt import lora
    from minislm.adapt.special_tokens import add_tokens
    from minislm.checkpoint import atomic_write_text
    from minislm.threads import auto_threads, blas_threads
    from minislm.errors import ConfigError
    from minislm.loading import save_tokenizer
    from minislm.model import families
    from minislm.outputs import check_output, mark_output
    if args.lora_rank is None and (args.merge or args.targets):
        raise ConfigError("--merge and --targets need --lora-rank (LoRA fine-tuning)")
    check_output(args.out, [args.model, args.data], args.overwrite)
    lr = ft.default_lr(args.lora_rank is not None) if args.lr is None else args.lr
    ft.finetune_options(args.steps, lr, args.batch_size, args.seed,          # bad numbers are
                        weight_decay=args.weight_decay)                    # refused before
    if args.lora_rank is not None:                                         # any work
        lora.check_options(args.lora_rank, args.lora_alpha, args.lora_dropout)
    model = minislm.load(args.model)
    if args.add_tool_tokens:
        model = add_tokens(model)
    max_len = min(args.max_len or model.config.max_position, model.config.max_position)
    examples = ft.load_examples(model.tokenizer, args.data, max_len, seed=args.seed)
    if args.lora_rank is not None:
        targets = args.targets.split(",") if args.targets else None
        model = lora.add_lora(model, args.lora_rank, args.lora_alpha or 2.0 * args.lora_rank,
                              args.lora_dropout, targets, seed=args.seed)
    also_train = []
    if args.add_tool_tokens and args.lora_rank is not None:   # the new rows must be learnt
        also_train = list(dict.fromkeys([families.embedding_name(model.config, model.prefix),
                                         families.lm_head_name(model.config, model.prefix)]))
    start = time.time()
    with blas_threads(args.threads if args.threads else auto_threads(model)):
        tuned, losses = ft.finetune(model, examples, args.steps, args.lr, args.batch_size,
                                    args.seed, also_train=also_train,
                                    weight_decay=args.weight_decay)
    seconds = time.time() - start
    if args.lora_rank is not None and not args.merge:
        out = lora.save_adapter(tuned, mark_output(args.out, "finetune"), base_model_name_or_path=str(model.path),
                                modules_to_save=also_train)
        if args.add_tool_tokens:                  # the grown tokenizer goes with the adapter
            save_tokenizer(tuned, out)
        what = f"PEFT adapter ({len(lora.lora_weights(tuned))} layers, r={args.lora_rank}" + \
            (f", modules_to_save {also_train})" if also_train else ")")
    else:
        out = minislm.save(lora.merge(tuned), mark_output(args.out, "finetune"))
        what = "merged HF checkpoint" if args.lora_rank is not None else "HF checkpoint"
    log = {"command": "finetune", **{k: v for k, v in vars(args).items() if not k.startswith("_")},
           "examples": len(examples), "first_loss": losses[0], "last_loss": losses[-1],
           "losses": losses, "seconds": round(seconds, 1)}
    atomic_write_text(out / "minislm_finetune.json", json.dumps(log, indent=2) + "\n")
    print(f"{len(examples)} examples, {args.steps} steps in {seconds:.1f}s: loss "
          f"{losses[0]:.3f} -> {sum(losses[-10:]) / len(losses[-10:]):.3f} (mean of last 10)")
    print(f"wrote {what} to {out}")
    return 0
