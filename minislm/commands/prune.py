"""minislm prune: depth/width trimming and unstructured/N:M pruning of a checkpoint.

    minislm prune --model PATH --method {depth,width,magnitude,wanda,sparsegpt}
        [--importance {magnitude,taylor,ppl,block,middle | minitron,voice-thesis}]
        [--remove-layers K]
        [--protect-first F --protect-last L] [--layers 0,1,2,2,3]
        [--heads H --kv-heads K --ffn F --hidden D] [--sparsity S | --nm N:M]
        [--scope {layer,global}] [--calib FILE] [--calib-samples N --calib-seqlen T]
        [--seed S] --out DIR

Writes an HF folder (dense weights with the zeros in place, masks.safetensors
for the unstructured methods) that transformers loads, and prints what changed.
"""
from __future__ import annotations

import sys

from . import add_overwrite, options

NAME = "prune"
HELP = "prune or trim a checkpoint (depth, width, magnitude, WANDA, SparseGPT)"
METHODS = ("depth", "width", "magnitude", "wanda", "sparsegpt")
DEPTH_IMPORTANCE = ("magnitude", "taylor", "ppl", "block", "middle")
WIDTH_IMPORTANCE = ("minitron", "voice-thesis")       # = minislm.prune.width.IMPORTANCE


def add_arguments(p):
    """Declare `minislm prune`'s options on the subparser p."""
    p.add_argument("--model", required=True, help="HF checkpoint folder (never modified)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--out", required=True, help="output folder for the pruned checkpoint")
    add_overwrite(p)
    g = p.add_argument_group("depth")
    g.add_argument("--importance", default=None, choices=DEPTH_IMPORTANCE + WIDTH_IMPORTANCE,
                   help="depth: block importance (default ppl, the LLaMA thesis' choice); "
                        "'middle' removes blocks symmetrically from the centre (GPT-2 slides). "
                        "width: 'minitron' (default; Minitron's mean over the sequence, L2 over "
                        "the batch) or 'voice-thesis' (the voice-assistant thesis' formulas)")
    g.add_argument("--remove-layers", type=int, help="number of blocks to remove")
    g.add_argument("--protect-first", type=int, default=None,
                   help="never remove the first F blocks (default 4, lowered on shallow models)")
    g.add_argument("--protect-last", type=int, default=None,
                   help="never remove the last L blocks (default 2, lowered on shallow models)")
    g.add_argument("--layers", help="explicit block sequence, e.g. 0,1,2,2,3 (Franken: skip "
                                    "and repeat); the result stores the blocks in that order")
    g = p.add_argument_group("width")
    g.add_argument("--heads", type=int, help="query heads to keep per layer")
    g.add_argument("--kv-heads", type=int, help="KV heads to keep (GQA; default: all when "
                                                "they divide --heads)")
    g.add_argument("--ffn", type=int, help="MLP neurons to keep per layer (d_ff)")
    g.add_argument("--hidden", type=int, help="embedding channels to keep (d_model)")
    g = p.add_argument_group("unstructured")
    s = g.add_mutually_exclusive_group()
    s.add_argument("--sparsity", type=float, help="fraction of weights to zero, 0–1")
    s.add_argument("--nm", help="N:M semi-structured pattern, N pruned of every M (e.g. 2:4)")
    g.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="magnitude: one fraction per layer or one global threshold")
    g = p.add_argument_group("calibration")
    g.add_argument("--calib", help="calibration text file or folder (default: the project "
                                   "corpus, train split)")
    g.add_argument("--calib-samples", type=int, default=32, help="random windows (default 32)")
    g.add_argument("--calib-seqlen", type=int, default=None,
                   help="tokens per window (default min(256, max_position))")
    g.add_argument("--seed", type=options.seed, default=0, help="seed of the calibration windows")


def run(args) -> int:
    """Prune or trim --model by --method (calibrating where it needs to) into --out;
    0 on success."""
    import minislm
    from minislm.calibration import calibration_batches
    from minislm.errors import ConfigError
    from minislm.outputs import check_output, mark_output
    from minislm.prune import depth, magnitude, report, sparsegpt, wanda, width

    allowed = {"depth": DEPTH_IMPORTANCE, "width": WIDTH_IMPORTANCE}.get(args.method, ())
    if args.importance is not None and args.importance not in allowed:
        raise ConfigError(f"--importance {args.importance} does not apply to --method "
                          f"{args.method}" + (f"; expected one of {', '.join(allowed)}"
                                              if allowed else " (it has no importance choice)"))
    importance = args.importance or {"depth": "ppl", "width": "minitron"}.get(args.method)
    check_output(args.out, [args.model, args.calib], args.overwrite)
    model = minislm.load(args.model)
    cfg = model.config

    def calib():
        seqlen = args.calib_seqlen or min(256, cfg.max_position)
        ids = calibration_batches(model, args.calib, args.calib_samples, seqlen, args.seed)
        print(f"calibration: {ids.shape[0]} windows × {ids.shape[1]} tokens from "
              f"{args.calib or 'the default corpus'} (seed {args.seed})", file=sys.stderr)
        return ids

    def need_amount():
        if args.sparsity is None and args.nm is None:
            raise ConfigError(f"--method {args.method} needs --sparsity S or --nm N:M")

    if args.method == "depth":
        if args.layers:
            layers = depth.parse_layers(args.layers)
            new = depth.select_layers(model, layers)
            print(f"blocks {layers} of {cfg.n_layer}")
        else:
            if not args.remove_layers:
                raise ConfigError("--method depth needs --remove-layers K (or --layers SEQ)")
            k = args.remove_layers
            if importance != "middle":       # refuse before reading calibration text
                first, last = depth.protection(cfg.n_layer, k, args.protect_first,
                                               args.protect_last)
            ids = None if importance in ("magnitude", "middle") else calib()
            drop, scores = depth.blocks_to_remove(model, k, importance, ids,
                                                  args.protect_first, args.protect_last,
                                                  progress=True)
            if scores is not None:
                print(f"{importance} importance per block: "
                      + " ".join(f"{i}:{v:.4g}" for i, v in enumerate(scores)))
                print(f"protected: first {first}, last {last}")
            new = depth.remove_layers(model, drop)
            print(f"removed blocks {drop}: {cfg.n_layer} -> {new.config.n_layer} layers")
    elif args.method == "width":
        if all(v is None for v in (args.heads, args.kv_heads, args.ffn, args.hidden)):
            raise ConfigError("--method width needs at least one of --heads, --kv-heads, "
                              "--ffn, --hidden")
        width.target_sizes(cfg, args.heads, args.kv_heads, args.ffn, args.hidden)  # check first
        new = width.width_trim(model, calib(), args.heads, args.kv_heads, args.ffn, args.hidden,
                               importance=importance, progress=True)
        print(f"{importance} importance")
        c2 = new.config
        print(f"heads {cfg.n_head}->{c2.n_head}, kv heads {cfg.n_kv_head}->{c2.n_kv_head}, "
              f"ffn {cfg.d_ff}->{c2.d_ff}, hidden {cfg.d_model}->{c2.d_model}")
    elif args.method == "magnitude":
        need_amount()
        new = magnitude.magnitude_prune(model, args.sparsity, args.scope, nm=args.nm)
    elif args.method == "wanda":
        need_amount()
        new = wanda.wanda(model, calib(), args.sparsity, args.nm, progress=True)
    else:
        need_amount()
        new = sparsegpt.sparsegpt(model, calib(), args.sparsity, args.nm, progress=True)

    print(f"parameters {model.num_params():,} -> {new.num_params():,}")
    print(report.format_report(report.sparsity_report(new), per_layer=args.method in
                               ("magnitude", "wanda", "sparsegpt")))
    out = minislm.save(new, mark_output(args.out, "prune"))
    print(f"wrote {out}")
    return 0
