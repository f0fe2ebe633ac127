python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 200 --background white --threads 1
# 78s wall
