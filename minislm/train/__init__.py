"""Training by hand: forward/backward pairs, losses, AdamW, the trainer.

    layers_backward.py   every layer's forward beside its backward
    loss.py              next-token cross-entropy (transformers' labels convention)
    backward.py          the whole model: value_and_grad, loss_and_grads
    optim.py             AdamW, gradient clipping, learning-rate schedules
    init.py              a new model of either family (GPT-2's initialisation)
    data.py              token streams and batches from a corpus
    trainer.py           the training loop with resumable checkpoints
"""
