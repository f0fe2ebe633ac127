python -m clipforge screen examples/toyworld/screen.json --out examples/toyworld/reports/screen
# 314s wall
