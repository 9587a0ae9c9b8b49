"""minislm train: train a new model (--init) or continue one (--model) on a corpus.

    minislm train --init llama --data corpus --steps 1500 --out runs/tiny-llama
    minislm train --model weights/tiny-gpt2 --data notes.txt --steps 200 --lr 1e-4 --out runs/ft
    minislm train ... --out runs/tiny-llama --resume     # continue an interrupted run

The default corpus (`--data corpus`) is the CPython help texts and docstrings
(`minislm.data.corpus`), split by module; a text file or a folder of .txt files
is cut into train/validation/test at line boundaries. A new model gets a new
byte-level BPE tokenizer trained on the train split unless --tokenizer is given.
At the end the validation perplexity is printed next to a unigram model's.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from . import add_overwrite, options

NAME = "train"
HELP = "train a GPT-2/LLaMA model with the hand-written backward pass and AdamW"


def add_arguments(p):
    """Declare `minislm train`'s options on the subparser p."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF checkpoint folder to continue training")
    src.add_argument("--init", choices=["gpt2", "llama"], help="start from a new random model")
    p.add_argument("--data", default="corpus",
                   help="'corpus' (CPython docstrings, default) or a text file / folder of .txt")
    p.add_argument("--out", required=True, help="output folder (HF model + trainer state)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    add_overwrite(p)
    arch = p.add_argument_group("new model (--init)")
    arch.add_argument("--tokenizer", help="folder with tokenizer.json (default: train a new one)")
    arch.add_argument("--vocab-size", type=int, default=4096, help="of a new tokenizer")
    arch.add_argument("--d-model", type=int, default=128)
    arch.add_argument("--n-layer", type=int, default=4)
    arch.add_argument("--n-head", type=int, default=4)
    arch.add_argument("--n-kv-head", type=int, default=None, help="LLaMA KV heads (default H/2)")
    arch.add_argument("--d-ff", type=int, default=None, help="default 4C (GPT-2), 3C (LLaMA)")
    arch.add_argument("--max-position", type=int, default=256)
    arch.add_argument("--tied", action=argparse.BooleanOptionalAction,
                      default=None, help="tie the LM head to the embedding (GPT-2 always)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=1000)
    opt.add_argument("--batch-size", type=int, default=8)
    opt.add_argument("--seq-len", type=int, default=256)
    opt.add_argument("--grad-accum", type=int, default=1)
    opt.add_argument("--lr", type=float, default=3e-3)
    opt.add_argument("--min-lr", type=float, default=None, help="default lr/10")
    opt.add_argument("--warmup", type=int, default=100)
    opt.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    opt.add_argument("--weight-decay", type=float, default=0.1)
    opt.add_argument("--clip", type=float, default=1.0, help="global-norm clip (0: none)")
    opt.add_argument("--seed", type=options.seed, default=0)
    opt.add_argument("--eval-every", type=int, default=100)
    opt.add_argument("--eval-tokens", type=int, default=32768,
                     help="validation tokens scored at every evaluation")
    opt.add_argument("--save-every", type=int, default=250)
    p.add_argument("--sample-prompt", default="Return the", type=options.text,
                   help="greedy sample printed before and after training")
    p.add_argument("--plot", action="store_true",
                   help="write training_curve.png (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true")


def load_splits(data: str) -> dict:
    """{'train': [documents], 'validation': [documents]} for 'corpus' or a text path."""
    from minislm.data.corpus import default_corpus, load_text_corpus, split_text
    if data == "corpus":
        return default_corpus()
    parts = split_text(load_text_corpus(data))
    return {name: [text] for name, text in parts.items()}


def new_model(args, splits):
    """A new model of --init's family and sizes,
    with a tokenizer trained on the train split unless --tokenizer gives one."""
    from minislm.config import Config
    from minislm.data.tokenizer_train import train_tokenizer
    from minislm.errors import ConfigError
    from minislm.tokenizer import load_tokenizer
    from minislm.train.data import end_of_text_id
    from minislm.train.init import hf_config_dict, init_model
    if args.tokenizer:
        tokenizer = load_tokenizer(Path(args.tokenizer))
        if tokenizer is None:
            raise ConfigError(f"{args.tokenizer}: no tokenizer.json found")
    else:
        tokenizer = train_tokenizer(splits["train"], args.vocab_size)
    C, H = args.d_model, args.n_head
    family = args.init
    d_ff = args.d_ff or (4 * C if family == "gpt2" else 3 * C)
    tied = True if family == "gpt2" else bool(args.tied)
    if family == "gpt2" and args.tied is False:
        raise ConfigError("GPT-2 always ties its LM head to the embedding (--tied)")
    eos = end_of_text_id(tokenizer)
    d = hf_config_dict(family, tokenizer.get_vocab_size(), C, args.n_layer, H, d_ff,
                       args.max_position, args.n_kv_head or max(1, H // 2), tied,
                       eos_id=eos, bos_id=eos)
    return init_model(Config.from_hf_dict(d, where="minislm train options"), args.seed,
                      tokenizer)


def greedy_sample(model, prompt: str, n: int = 40) -> str:
    """The greedy continuation of `prompt` (at most n tokens, within max_position), decoded."""
    import numpy as np

    import minislm
    from minislm.tokenizer import decode, encode
    ids = encode(model.tokenizer, prompt)[: model.config.max_position - 1]
    n = min(n, model.config.max_position - len(ids))
    if not ids:
        return prompt
    out = minislm.generate(model, np.array([ids]), n, temperature=0.0,
                           check_numerics=True)                             # [1, T + n]
    return decode(model.tokenizer, out[0, len(ids):])


def write_plot(history, path: Path, title: str) -> bool:
    """Write the training and validation loss curves as a PNG at `path`;
    False (and a note) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot written", file=sys.stderr)
        return False
    from minislm.evaluate.report import save_figure
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], lw=0.7, label="train")
    val = [h for h in history if "val_loss" in h]
    ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", ms=3,
            label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return True


def run(args) -> int:
    """Train a new (--init) or loaded (--model) model on --data,
    compare its validation perplexity with a unigram model's and write --out; 0 on success."""
    import minislm
    from minislm.checkpoint import atomic_write_text
    from minislm.errors import ConfigError
    from minislm.outputs import check_output, mark_output
    from minislm.train.data import eval_windows, token_stream, unigram_perplexity
    from minislm.train.trainer import TrainOptions, train

    out = Path(args.out)
    started = time.perf_counter()
    options = TrainOptions(
        steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
        grad_accum=args.grad_accum, lr=args.lr,
        min_lr=args.lr / 10 if args.min_lr is None else args.min_lr, warmup=args.warmup,
        schedule=args.schedule, weight_decay=args.weight_decay,
        clip=None if args.clip <= 0 else args.clip, seed=args.seed,   # NaN is refused
        eval_every=args.eval_every, save_every=args.save_every)
    options.validate()                 # bad numbers refused before any data is read
    check_output(out, [args.model, args.tokenizer, args.data], args.overwrite)
    splits = load_splits(args.data)
    if args.resume:
        model = minislm.load(out).replace(path=None)   # parameters come from the trainer state
    elif args.model:
        model = minislm.load(args.model)
    else:
        model = new_model(args, splits)
    if args.seq_len > model.config.max_position:
        raise ConfigError(f"--seq-len {args.seq_len} exceeds the model's max_position "
                          f"({model.config.max_position})")
    mark_output(out, "train")
    if args.init and not args.resume and model.tokenizer is not None:
        from minislm.data.tokenizer_train import save_tokenizer
        save_tokenizer(model.tokenizer, out, model_max_length=model.config.max_position)
    train_stream = token_stream(model.tokenizer, splits["train"])
    val_stream = token_stream(model.tokenizer, splits["validation"])
    windows = eval_windows(val_stream, args.seq_len, args.eval_tokens)
    print(f"{model.config.family}: {model.num_params():,} parameters, "
          f"{train_stream.size:,} training tokens, {windows.size:,} validation tokens")
    before = greedy_sample(model, args.sample_prompt) if args.sample_prompt else None
    trained, history = train(model, train_stream, options, val_windows=windows, out=out,
                             resume=args.resume, progress=not args.no_progress)
    val_ppl = math.exp(history[-1]["val_loss"])
    unigram = unigram_perplexity(train_stream, windows, model.config.vocab_size)
    after = greedy_sample(trained, args.sample_prompt) if args.sample_prompt else None
    summary = {
        "command": "minislm " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(
            ("minislm", "__main__.py")) else None,
        "family": trained.config.family, "parameters": trained.num_params(),
        "seed": args.seed, "steps": args.steps,
        "tokens_seen": history[-1]["tokens"],
        "train_seconds": history[-1]["elapsed"],
        "wall_seconds_this_invocation": time.perf_counter() - started,
        "final_train_loss": history[-1]["loss"], "validation_loss": history[-1]["val_loss"],
        "validation_perplexity": val_ppl, "unigram_perplexity": unigram,
        "validation_tokens": int(windows.size), "training_tokens": int(train_stream.size),
        "sample_prompt": args.sample_prompt, "sample_before": before, "sample_after": after,
    }
    if args.data == "corpus":
        from minislm.data.corpus import corpus_stats
        summary["corpus"] = corpus_stats()
    atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    if args.plot:
        write_plot(history, out / "training_curve.png",
                   f"{trained.config.family}, {trained.num_params() / 1e6:.2f} M parameters")
    print(f"validation perplexity {val_ppl:.2f} (unigram model {unigram:.2f}) "
          f"after {history[-1]['tokens']:,} tokens in {history[-1]['elapsed']:.0f} s")
    if before is not None:
        print(f"sample before: {args.sample_prompt!r} -> {before!r}")
        print(f"sample after:  {args.sample_prompt!r} -> {after!r}")
    print(f"wrote {out}")
    return 0
