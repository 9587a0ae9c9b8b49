#!/bin/sh
# Second half of the queue (after Gemma's baseline): Gemma LAMBADA with the in-place word
# tokenization, then the remaining grid cells in priority order.
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1
python study/baselines.py --model gemma3 --ppl-tokens 1024 --lambada 20 --tasks lambada \
    --engines minislm,transformers --out study/out/baselines_gemma.jsonl
python study/grid.py --cells depth_8,wanda_4:8,wanda_50%,sparsegpt_50%,rtn3_g128,depth_4,rtn8_tensor,rtn8_channel,gptq3_g128,sparsegpt_2:4,gptq4_g128_eora16,gptq4_g128_eora64,rtn8_g128
