python -m clipforge screen examples/toyworld/screen.json --out benchmarks/analyses/screen
# 135s wall
