python -m clipforge compare examples/toyworld/compare_training_followup.json --out examples/toyworld/reports/compare_training_followup
# 1727s wall
