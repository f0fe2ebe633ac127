python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 200 --background white --threads 1 --set parameterization.name=multires --set optimizer.lr=0.05
# 99s wall
