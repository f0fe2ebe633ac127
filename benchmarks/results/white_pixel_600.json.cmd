python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 600 --background white --threads 1
# 264s wall
