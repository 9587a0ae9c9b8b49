"""Quantization: round-to-nearest grids, bit packing, GPTQ, EoRA, AWQ, GGUF blocks,
quantized linear layers and checkpoints. Each technique is a function on arrays
or models; see the module docstrings for the equations."""
