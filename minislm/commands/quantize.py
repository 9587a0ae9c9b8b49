"""minislm quantize: write a packed quantized checkpoint (RTN, GPTQ or AWQ, optional EoRA;
or NF4, QLoRA's base)."""
from __future__ import annotations

from . import add_overwrite, options

NAME = "quantize"
HELP = "quantize a checkpoint's linear layers to packed b-bit weights (rtn | gptq | awq | nf4)"


def add_arguments(p):
    """Declare `minislm quantize`'s options on the subparser p."""
    p.add_argument("--model", required=True, help="HF checkpoint folder (float)")
    p.add_argument("--method", choices=("rtn", "gptq", "awq", "nf4"), default="gptq",
                   help="nf4: QLoRA's 4-bit NormalFloat, blocks of 64 weights, double-quantized "
                        "scales (finetune --lora-rank over the result is QLoRA)")
    p.add_argument("--bits", type=int, default=None, help="2 … 8 (default 4, or the grid's)")
    p.add_argument("--group-size", type=int, default=None,
                   help="input columns per scale (default 128); -1 = per output channel, "
                        "0 = per tensor; nf4: weights per block (default 64)")
    p.add_argument("--sym", action="store_true", default=None,
                   help="symmetric grid (no zero points stored)")
    p.add_argument("--grid", choices=("q4_0", "q4_1", "q8_0"), default=None,
                   help="rtn/gptq on llama.cpp's grid for this GGUF type (sets 4 or 8 bits, "
                        "group size 32, sym): `export-gguf --type` it then writes the codes "
                        "as they are, without rounding again")
    p.add_argument("--act-order", action="store_true",
                   help="GPTQ: quantize columns by descending Hessian diagonal (static groups)")
    p.add_argument("--damp", type=float, default=0.01,
                   help="GPTQ damping as a fraction of mean diag(H) (default 0.01)")
    p.add_argument("--eora-rank", type=int, default=0, help="EoRA compensation rank (0 = off)")
    p.add_argument("--embeddings", action="store_true",
                   help="also quantize the token embedding and LM head (RTN, same grid)")
    p.add_argument("--calib", default=None,
                   help="UTF-8 text file or folder for calibration (default: the built-in corpus)")
    p.add_argument("--n-samples", type=int, default=128, help="calibration windows (default 128)")
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per window (default min(512, max_position))")
    p.add_argument("--seed", type=options.seed, default=0)
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite(p)


def run(args) -> int:
    """Quantize --model's linears by --method into a packed checkpoint at --out; 0 on success."""
    import minislm
    from minislm.errors import ConfigError
    from minislm.calibration import calibration_batches
    from minislm.quant.model_quant import check_nf4_options, grid_scheme, model_nbytes, \
        quantize_model
    from minislm.outputs import check_output, mark_output
    from minislm.quant.rtn import check_scheme
    check_output(args.out, [args.model, args.calib], args.overwrite)
    if args.method == "nf4":
        check_nf4_options(4 if args.bits is None else args.bits,
                          64 if args.group_size is None else args.group_size,
                          args.eora_rank, args.embeddings)
    elif args.grid is not None:
        grid_scheme(args.grid, args.method, args.bits, args.group_size, args.sym)
    else:
        check_scheme(4 if args.bits is None else args.bits,
                     128 if args.group_size is None else args.group_size)
    if args.eora_rank < 0 or args.damp < 0:
        raise ConfigError("--eora-rank and --damp must be non-negative")
    model = minislm.load(args.model)
    calib = None
    if args.method not in ("rtn", "nf4") or args.eora_rank > 0:
        calib = calibration_batches(model, args.calib, args.n_samples, args.seq_len, args.seed)
    qmodel, report = quantize_model(model, args.method, args.bits, args.group_size, args.sym,
                                    args.act_order, args.damp, args.eora_rank, calib,
                                    embeddings=args.embeddings, grid=args.grid)
    out = minislm.save(qmodel, mark_output(args.out, "quantize"))
    for e in report:
        if "error" in e:
            extra = f"  (RTN {e['error_rtn']:.4g})" if "error_rtn" in e else ""
            print(f"{e['name']:<48} ‖WX−ŴX‖²/n = {e['error']:.4g}{extra}")
    before, after = model_nbytes(model), model_nbytes(qmodel)
    print(f"parameters in memory: {before:,} bytes -> {after:,} bytes ({before / after:.2f}x)")
    print(f"wrote {out}")
    return 0
