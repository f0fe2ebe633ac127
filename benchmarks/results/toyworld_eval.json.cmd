python -m benchmarks.toyworld_eval --json --steps 200 --models toyworld-vit-3k,toyworld-vit-8k,toyworld-vit --sheet benchmarks/results/toyworld_eval_sheet.png
# 462s wall
