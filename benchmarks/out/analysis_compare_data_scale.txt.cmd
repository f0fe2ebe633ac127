python -m clipforge compare examples/toyworld/compare_data_scale.json --out benchmarks/analyses/compare_data_scale
# 712s wall
