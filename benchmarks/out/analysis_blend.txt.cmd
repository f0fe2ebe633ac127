python -m clipforge blend examples/toyworld/blend.json --out benchmarks/analyses/blend
# 205s wall
