python -m benchmarks.compare_parameterizations --json --steps 150 --seeds 2 --prompts 24 --eval-every 15 --out benchmarks/results/parameterizations
# 784s wall
