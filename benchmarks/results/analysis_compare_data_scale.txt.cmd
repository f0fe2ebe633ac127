python -m clipforge compare examples/toyworld/compare_data_scale.json --out examples/toyworld/reports/compare_data_scale
# 712s wall
