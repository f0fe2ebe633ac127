python -m clipforge blend examples/toyworld/blend_embedding.json --out examples/toyworld/reports/blend_embedding
# 367s wall
