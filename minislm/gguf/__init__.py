"""GGUF files in: the container reader, the block dequantizers, the tokenizer builder and the
mapping of llama.cpp's tensor names and layouts to transformers' (the model core's "files in"
layer; minislm/quant/gguf_* writes GGUF files and reuses the format constants from here)."""
