"""minislm distill: train a student checkpoint on a teacher's softened distribution."""
from __future__ import annotations

import json
import time

from . import add_overwrite, options

NAME = "distill"
HELP = "knowledge distillation: T²·KL(teacher‖student) mixed with the hard-label loss by α"


def add_arguments(p):
    """Declare `minislm distill`'s options on the subparser p."""
    p.add_argument("--teacher", required=True, help="HF checkpoint folder of the teacher")
    p.add_argument("--student", required=True,
                   help="HF checkpoint folder of the student (same tokenizer/vocabulary)")
    p.add_argument("--data", required=True,
                   help="'toolcall', 'requirements', a JSONL of prompt/response (or text) rows, "
                        "or a plain-text file")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5,
                   help="weight of the distillation term (1 - alpha on the hard labels)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True, help="output folder for the trained student")
    add_overwrite(p)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=options.seed, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (default: 1 for models under 20 M parameters, whose "
                        "matrices are too small to share; else the BLAS default)")
    p.add_argument("--max-len", type=int, default=None,
                   help="tokens per example (default: the smaller max_position)")


def held_out_losses(teacher, student, examples, temperature, alpha, pad):
    """(L, L_KD, L_CE) of the student on one fixed batch of held-out examples."""
    from minislm.adapt import finetune as ft
    from minislm.adapt.distill import distillation_loss
    from minislm.model.forward import forward
    ids, labels = ft.make_batch(examples, list(range(min(32, len(examples)))), pad)
    loss, _, parts = distillation_loss(forward(student, ids, check_numerics=True),
                                       forward(teacher, ids, check_numerics=True), labels,
                                       temperature, alpha)
    return loss, parts["kd"], parts["ce"]


def run(args) -> int:
    """Check the numbers, load teacher and student, distill, report held-out KD/CE and write
    the student; 0 on success."""
    import minislm
    from minislm.adapt import finetune as ft
    from minislm.adapt.distill import distill, distill_options
    from minislm.checkpoint import atomic_write_text
    from minislm.threads import auto_threads, blas_threads
    from minislm.errors import ConfigError
    from minislm.outputs import check_output, mark_output
    check_output(args.out, [args.teacher, args.student, args.data], args.overwrite)
    distill_options(args.steps, args.lr, args.batch_size, args.seed, args.temperature,
                    args.alpha)                        # bad numbers refused before any work
    teacher, student = minislm.load(args.teacher), minislm.load(args.student)
    if student.tokenizer is None:
        raise ConfigError(f"{args.student}: the student folder has no tokenizer.json")
    max_len = min(args.max_len or 10**9, teacher.config.max_position,
                  student.config.max_position)
    examples = ft.load_examples(student.tokenizer, args.data, max_len, seed=args.seed)
    named_task = args.data in ("toolcall", "requirements")
    held_out = ft.load_examples(student.tokenizer, args.data, max_len, split="validation",
                                seed=args.seed) if named_task else examples[-32:]
    pad = ft.pad_id_of(student.tokenizer)
    before = held_out_losses(teacher, student, held_out, args.temperature, args.alpha, pad)
    start = time.time()
    with blas_threads(args.threads if args.threads else auto_threads(teacher)):
        trained, history = distill(teacher, student, examples, args.steps, args.temperature,
                                   args.alpha, args.lr, args.batch_size, args.seed)
    seconds = time.time() - start
    after = held_out_losses(teacher, trained, held_out, args.temperature, args.alpha, pad)
    out = minislm.save(trained, mark_output(args.out, "distill"))
    log = {"command": "distill", **{k: v for k, v in vars(args).items() if not k.startswith("_")},
           "examples": len(examples), "held_out_before": dict(zip(("loss", "kd", "ce"), before)),
           "held_out_after": dict(zip(("loss", "kd", "ce"), after)),
           "history": [list(h) for h in history], "seconds": round(seconds, 1)}
    atomic_write_text(out / "minislm_distill.json", json.dumps(log, indent=2) + "\n")
    where = "validation split" if named_task else "last 32 training examples"
    print(f"held-out ({where}) KD {before[1]:.3f} -> {after[1]:.3f}, CE {before[2]:.3f} -> "
          f"{after[2]:.3f} after {args.steps} steps in {seconds:.1f}s")
    print(f"wrote the student to {out}")
    return 0
