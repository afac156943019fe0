#!/usr/bin/env bash
# The CUDA half of the project, for a machine with a GPU, in one run of under 8 minutes:
#   1. the graph-capture correctness tests (benchmarks/test_harness.py);
#   2. every CUDA test (`pytest -m cuda`: the agreement, optimizer, trajectory, low-precision
#      and TF32 tests on the GPU), interrupted at 150 s;
#   3. every torch-cuda and torch-cuda-graph training step (tiny, tutorial, large and the GPU
#      tier xl, each beside its floor; float32, float64 and bfloat16): about 100 benchmarks,
#      each's timed rounds capped at 0.25 s (the xl examples take a few seconds each to
#      build), interrupted at 270 s; pytest still prints and writes what it timed.
# Set BENCH_K to select other benchmarks (e.g. BENCH_K=cuda for the fwd_bwd and h2d
# phases too), PYTHON for another interpreter (default python3).
# Results go to $OUT (default out/gpu):
#   machine.txt    nvidia-smi, torch/CUDA versions, the CPU
#   graph_test.txt, cuda_tests.txt   pytest's output of stages 1 and 2
#   cuda.txt       stage 3's output: tables, the summary with % of peak and of floor, targets
#   cuda.json      pytest-benchmark's JSON (extra_info per benchmark, machine_info), without
#                  the per-round times, which can reach megabytes for graph replays
# Needs torch with CUDA, numpy, hypothesis, threadpoolctl, tqdm, pytest, pytest-benchmark
# and pytest-xdist already installed: the machine may have no network. The project need not
# be pip-installed: its pytest plugin is loaded with -p where no installed entry point
# registers it.
# Exit status: stage 3's, except 3 where it was interrupted at its time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
{
    nvidia-smi || true
    "$PY" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print('numpy', numpy.__version__)"
    lscpu | grep -E 'Model name|^CPU\(s\)' || true
} > "$OUT/machine.txt" 2>&1
"$PY" -c "import torch, pytest_benchmark, hypothesis, threadpoolctl, tqdm; assert torch.cuda.is_available(), 'no CUDA device'" \
    >> "$OUT/machine.txt" 2>&1 || { echo "not a usable GPU machine: see $OUT/machine.txt"; cat "$OUT/machine.txt"; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
plugin=()
"$PY" -c "import sys; from importlib.metadata import entry_points
sys.exit(any(e.value.startswith('agreement') for e in entry_points(group='pytest11')))" && plugin=(-p agreement.pytest_plugin)
workers=()
"$PY" -c "import xdist" 2>/dev/null && workers=(-n 4)

timeout 90 "$PY" -m pytest benchmarks/test_harness.py -k "graph" "${plugin[@]}" -p no:cacheprovider -q \
    > "$OUT/graph_test.txt" 2>&1
echo "graph capture tests: exit $? ($(tail -1 "$OUT/graph_test.txt"))"
timeout -s INT -k 20 150 "$PY" -m pytest tests -m cuda "${plugin[@]}" "${workers[@]}" -p no:cacheprovider -q -rfs \
    > "$OUT/cuda_tests.txt" 2>&1
echo "CUDA tests: exit $? ($(tail -1 "$OUT/cuda_tests.txt"))"
grep -E "^(FAILED|ERROR)" "$OUT/cuda_tests.txt" | head -20

timeout -s INT -k 20 270 "$PY" -m pytest benchmarks --benchmark-only -k "${BENCH_K:-cuda and step}" "${plugin[@]}" \
    -p no:cacheprovider --benchmark-max-time=0.25 --benchmark-json="$OUT/cuda_full.json" > "$OUT/cuda.txt" 2>&1
status=$?
[ "$status" -eq 124 ] && status=3
"$PY" - "$OUT/cuda_full.json" "$OUT/cuda.json" <<'EOF' && rm -f "$OUT/cuda_full.json"
import json, sys
results = json.load(open(sys.argv[1]))
for bench in results.get("benchmarks", []):
    bench.get("stats", {}).pop("data", None)
json.dump(results, open(sys.argv[2], "w"), indent=1)
EOF
sed -n '/NumPy vs torch: medians/,/steps against their floor/p' "$OUT/cuda.txt" | grep -E 'two_layer|GPU|CPU|cuda/' | head -60
sed -n '/performance targets/,$p' "$OUT/cuda.txt" | grep -E 'met|MISS|passed|failed'
exit $status
