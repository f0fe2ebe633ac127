#!/usr/bin/env bash
# Every CPU figure in benchmarks/RESULTS.md, one command after another (never two at once: two
# processes that each use both cores run many times slower). Outputs go to benchmarks/results/ (the
# analyses' reports beside their specs, in examples/toyworld/reports/ and, for the specs that use
# clipforge-zoo's models, zoo/examples/reports/). About 1.5 hours on 2 cores.
#     bash benchmarks/run_cpu.sh            # everything
#     bash benchmarks/run_cpu.sh speed      # only the outputs whose file name starts with "speed"
set -euo pipefail
only=${1:-}
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
out=benchmarks/results
mkdir -p "$out"
run() {  # run FILE CMD...: stdout to $out/FILE, the command and its wall time to $out/FILE.cmd
    local file=$1; shift
    [[ -n $only && $file != "$only"* ]] && return 0
    echo "== $file: $*" >&2
    local start=$SECONDS
    "$@" > "$out/$file"
    printf '%s\n# %ss wall\n' "$*" "$((SECONDS - start))" > "$out/$file.cmd"
}
run engine_overhead.json python -m benchmarks.engine_overhead --json --steps 10 --repeats 3
run speed_toyworld_b4.json python -m benchmarks.speed --json --batch 4 --steps 10 --repeats 3
run speed_toyworld_b8.json python -m benchmarks.speed --json --batch 8 --steps 10 --repeats 3
run speed_toyworld_b24.json python -m benchmarks.speed --json --batch 24 --steps 10 --repeats 3
run speed_vitb16.json python -m benchmarks.speed --json --model vit-b-16 --batch 2 --steps 2
run speed_compile_b4.json python -m benchmarks.speed --json --batch 4 --steps 10 --repeats 3 --compile
run speed_compile_b8.json python -m benchmarks.speed --json --batch 8 --steps 10 --repeats 3 --compile
run toyworld_eval.json python -m benchmarks.toyworld_eval --json --steps 200 \
    --models toyworld-vit-3k,toyworld-vit-8k,toyworld-vit --judge toyworld-judge --sheet "$out/toyworld_eval_sheet.png"
# the second design (issue 12): the robust default, 24 random prompts x 2 seeds, paper setup and TV 0.02
for v in rn:0.005 rn_tv002:0.02; do
    run "toyworld_eval_${v%%:*}.json" python -m benchmarks.toyworld_eval --json --prompts 24 --seeds 0,1 --steps 200 \
        --threads 1 --set "regularizers[0].options.weight=${v#*:}" --sheet "$out/toyworld_eval_${v%%:*}_sheet.png"
done
# why "white" inverts to light gray with the pixel preset (issue 22): 8 white-background prompts x 2 seeds,
# the paper's pixel setup against one change at a time; the mean border brightness is in each JSON
for v in pixel: pixel_gray:parameterization.options.init=gray pixel_tv0:regularizers[0].options.weight=0 \
    multires:parameterization.name=multires,optimizer.lr=0.05; do
    sets=(); IFS=, read -ra kv <<< "${v#*:}"; for x in "${kv[@]}"; do [[ -n $x ]] && sets+=(--set "$x"); done
    run "white_${v%%:*}.json" python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 200 \
        --background white --threads 1 "${sets[@]}"
done
run white_pixel_600.json python -m benchmarks.toyworld_eval --json --prompts 8 --seeds 0,1 --steps 600 --background white \
    --threads 1
run parameterizations.json python -m benchmarks.compare_parameterizations --json --steps 150 --seeds 2 --prompts 24 \
    --eval-every 15 --model toyworld-vit --judge toyworld-judge --out "$out/parameterizations"
run parameterizations_rn.json python -m benchmarks.compare_parameterizations --json --steps 150 --seeds 2 --prompts 24 \
    --eval-every 15 --out "$out/parameterizations_rn"
run parameterizations_speed_vitb16.json python -m benchmarks.compare_parameterizations --speed-only --json
# objectives (issue 26): the truth checks' figures, and a layer batched against one run per channel
run objective_truth.json python -m benchmarks.objective_truth --threads 1 --json
run layer_batching.json python -m benchmarks.layer_batching --threads 1 --channels 16 --steps 50 --json
for analysis in probe:probe_ball screen:screen compare:compare_data_scale compare:compare_training compare:compare_training_followup blend:blend blend:blend_embedding; do
    name=${analysis##*:}
    [[ -n $only && analysis_$name != "$only"* ]] && continue
    examples=examples/toyworld
    [[ -f zoo/examples/$name.json ]] && examples=zoo/examples  # the specs that use clipforge-zoo's models
    rm -rf "$examples/reports/$name"
    run "analysis_$name.txt" python -m clipforge "${analysis%%:*}" "$examples/$name.json" \
        --out "$examples/reports/$name"
done
