python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 200 --background white --threads 1 --set regularizers[0].options.weight=0
# 87s wall
