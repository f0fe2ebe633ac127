python -m clipforge blend examples/toyworld/blend.json --out examples/toyworld/reports/blend
# 560s wall
