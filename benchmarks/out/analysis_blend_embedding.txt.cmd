python -m clipforge blend examples/toyworld/blend_embedding.json --out benchmarks/analyses/blend_embedding
# 157s wall
