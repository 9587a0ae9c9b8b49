#!/bin/sh
# The study in priority order, one experiment at a time (each step resumes: finished
# grid cells are skipped). Run from the repository root:  sh study/run_all.sh
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1
G="python study/grid.py --cells"
$G base,rtn4_g128,gptq4_g128,wanda_2:4
uptime; /usr/bin/time -v python -m minislm.cli compress --model study/out/smollm2 \
    --config study/configs/llama_thesis_smollm2_quick.toml --out study/out/compress_quick \
    --overwrite --quiet > study/out/compress_quick.log 2>&1; uptime
$G wanda_1:8,depth_2,depth_8,wanda_4:8,wanda_50%,sparsegpt_50%,rtn3_g128,gptq3_g128,depth_4,rtn8_tensor,rtn8_channel,sparsegpt_2:4,gptq4_g128_eora16,gptq4_g128_eora64,rtn8_g128
