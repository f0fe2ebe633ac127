python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 200 --background white --threads 1 --set parameterization.options.init=gray
# 100s wall
