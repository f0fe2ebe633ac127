python -m clipforge blend examples/toyworld/blend.json --out benchmarks/analyses/blend
# 189s wall
