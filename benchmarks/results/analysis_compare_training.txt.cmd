python -m clipforge compare examples/toyworld/compare_training.json --out examples/toyworld/reports/compare_training
# 915s wall
