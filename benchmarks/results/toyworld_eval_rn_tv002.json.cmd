python -m benchmarks.toyworld_eval --json --prompts 24 --seeds 0,1 --steps 200 --threads 1 --set regularizers[0].options.weight=0.02 --sheet benchmarks/results/toyworld_eval_rn_tv002_sheet.png
# 403s wall
