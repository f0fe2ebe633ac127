python -m benchmarks.speed --json --model vit-b-16 --batch 2 --steps 2
# 201s wall
