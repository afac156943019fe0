#!/usr/bin/env bash
# The CUDA half of the benchmarks, for a machine with a GPU: every torch-cuda and
# torch-cuda-graph training step (tiny, tutorial, large and the GPU tier xl, each
# beside its floor; float32, float64 and bfloat16), the graph-capture correctness
# test, and what the machine is. About 100 benchmarks, each's timed rounds capped at 0.25 s (the xl examples take
# a few seconds each to build): meant to finish in under 5 minutes; pytest is
# interrupted at 270 s and still writes what it timed. Set BENCH_K to select
# otherwise (e.g. BENCH_K=cuda for the fwd_bwd and h2d phases too).
# Results go to $OUT (default out/gpu):
#   cuda.txt    pytest's output: tables, the summary with % of peak and of floor, targets
#   cuda.json   pytest-benchmark's JSON (extra_info per benchmark, machine_info)
#   machine.txt nvidia-smi, torch/CUDA versions, the CPU
# Needs torch with CUDA and the project's test dependencies already installed
# (pip install -e ".[test]"): the machine may have no network.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
{
    nvidia-smi || true
    python -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print('numpy', numpy.__version__)"
    lscpu | grep -E 'Model name|^CPU\(s\)' || true
} > "$OUT/machine.txt" 2>&1
python -c "import torch, pytest_benchmark, hypothesis, threadpoolctl; assert torch.cuda.is_available(), 'no CUDA device'" \
    >> "$OUT/machine.txt" 2>&1 || { echo "not a usable GPU machine: see $OUT/machine.txt"; cat "$OUT/machine.txt"; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 60 python -m pytest benchmarks/test_harness.py -k graph_replay -p no:cacheprovider -q \
    > "$OUT/graph_test.txt" 2>&1
echo "graph capture test: exit $? (see $OUT/graph_test.txt)"
timeout -s INT -k 20 270 python -m pytest benchmarks --benchmark-only -k "${BENCH_K:-cuda and step}" -p no:cacheprovider \
    --benchmark-max-time=0.25 --benchmark-json="$OUT/cuda.json" > "$OUT/cuda.txt" 2>&1
status=$?
sed -n '/NumPy vs torch: medians/,$p' "$OUT/cuda.txt" | grep -E 'two_layer|GPU|CPU|cuda/|met|MISS' | head -80
exit $status
