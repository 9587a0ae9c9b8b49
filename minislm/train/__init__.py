"""Training by hand: losses, gradients, AdamW, the trainer (each layer's forward and
backward live side by side in `minislm.model`).

    loss.py              next-token cross-entropy (transformers' labels convention)
    backward.py          the whole model: value_and_grad, loss_and_grads
    optim.py             AdamW, gradient clipping, learning-rate schedules
    loop.py              the one optimisation loop (accumulation, clipping, AdamW,
                         schedule, resumable state) that train, finetune and distill run
    init.py              a new model (GPT-2's initialisation; GPT-2 or LLaMA configs)
    data.py              token streams and batches from a corpus
    trainer.py           training on a token stream, with checkpoints
"""
