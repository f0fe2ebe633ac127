#!/usr/bin/env bash
# The quickstart on a machine busy with another job (issue 24): a two-thread matrix-multiplication loop
# holds both cores while `clipforge invert examples/quickstart.json` runs with two threads (torch's
# default, and clipforge's on a two-core machine) and with one. Wall times go to
# benchmarks/results/busy_threads.txt. About 10-15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
out=benchmarks/results/busy_threads.txt
tmp="$(mktemp -d)"
python3 -c "
import torch
torch.set_num_threads(2)
a = torch.randn(1500, 1500)
while True:
    a = torch.tanh(a @ a)
" &
hog=$!
trap 'kill $hog 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 5
: > "$out"
for threads in 2 1; do
    start=$(date +%s.%N)
    clipforge invert examples/quickstart.json --threads "$threads" --out "$tmp/threads$threads" > /dev/null 2>&1
    end=$(date +%s.%N)
    printf 'clipforge invert examples/quickstart.json --threads %s (busy machine): %.1f s wall\n' \
        "$threads" "$(echo "$end - $start" | bc)" | tee -a "$out"
done
