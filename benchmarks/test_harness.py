"""The benchmark machinery itself: FLOP counts, resets, summary table (plain tests)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agreement.optimizers import OPTIMIZERS
from agreement.registry import CASES, cases
from benchmarks import bodies, flops, summary
from benchmarks.settings import OPTIMIZER

cases()  # fills the registry


@pytest.mark.slow  # FlopCounterMode's first use imports torch._dynamo: seconds
@pytest.mark.parametrize("size", ["tiny", "tutorial"])
def test_matmul_flops_match_the_hand_count(size):
    """Dense layer X (N, in) W (in, out): forward 2 N in out; backward dW the same and
    dX the same, except for the first layer, whose input is data (no gradient)."""
    ex = CASES["two_layer_regression"].build(size, np.float32, 0)
    (n, d_in), (_, hidden), (_, d_out) = ex.data["X"].shape, ex.params["W1"].shape, ex.params["W2"].shape
    assert flops.matmul_flops(CASES["two_layer_regression"], ex) == 4 * n * d_in * hidden + 6 * n * hidden * d_out
    ex = CASES["linear_regression"].build(size, np.float32, 0)
    (n, d_in), (_, d_out) = ex.data["X"].shape, ex.params["W"].shape
    assert flops.matmul_flops(CASES["linear_regression"], ex) == 4 * n * d_in * d_out


@pytest.mark.slow
def test_step_flops_add_the_update():
    case = CASES["linear_regression"]
    ex = case.build("tiny", np.float32, 0)
    defaults = OPTIMIZERS[OPTIMIZER].defaults
    n_params = sum(v.size for v in ex.params.values())
    assert (flops.call_flops(case, ex, "step", defaults) - flops.call_flops(case, ex, "fwd_bwd", defaults)
            == n_params * flops.sgd_flops_per_element(**defaults))


def _value(loss) -> float:
    return float(loss.detach()) if hasattr(loss, "detach") else float(loss)


@pytest.mark.parametrize("backend", ["numpy", "numpy-readable", "torch-cpu"])
@pytest.mark.parametrize("name", ["two_layer_classifier", "logistic_regression_sigmoid"])
def test_reset_makes_every_round_time_the_same_step(name, backend):
    """A step changes the parameters; after reset the next step must see the same ones."""
    case = CASES[name]
    ex = case.build("tiny", np.float64, 0)
    if backend.startswith("numpy"):
        body = bodies.numpy_body(case, ex, "step", readable=backend == "numpy-readable")
    else:
        body = bodies.torch_body(case, ex, "step", "cpu")
    losses = []
    for _ in range(2):
        body.reset()
        losses.append([_value(body.run()), _value(body.run())])
    assert losses[0] == losses[1]
    assert losses[0][0] != losses[0][1], "the step did not change the parameters"


def test_summary_table_groups_backends_and_states_ratios():
    rows = [dict(case="c", phase="step", size="tiny", dtype="float32", backend=b, median_s=t, flops=10,
                 peak_fraction=0.5, peak_gflops=1.0) for b, t in (("numpy", 1e-3), ("torch-cpu", 3e-3))]
    text = "\n".join(summary.table(rows))
    assert "3.00x" in text and "1 ms" in text and "3 ms" in text and "50% mm" in text
    assert any(line.startswith("met  numpy step faster") for line in summary.targets(rows))


def test_the_grid_and_the_table_take_their_sizes_from_the_registry(monkeypatch):
    """A case is timed at the sizes it builds (Case.sizes), and the table orders sizes as
    the registry lists them, before sizes it does not know."""
    from benchmarks.test_training import _grid

    case = CASES["linear_regression"]
    monkeypatch.setitem(CASES, case.name, dataclasses.replace(case, sizes=("tiny", "huge")))
    assert {p.values[2] for p in _grid() if p.values[0].name == case.name} == {"tiny", "huge"}
    rows = [dict(case="c", phase="step", size=s, dtype="float32", backend="numpy") for s in ("zzz", "huge", "tiny")]
    assert [size for _, _, size, _ in summary.grouped(rows)] == ["tiny", "huge", "zzz"]


@pytest.mark.slow  # importing matplotlib takes seconds
def test_plot_draws_time_against_size_per_backend(tmp_path):
    from benchmarks import plot

    results = {"benchmarks": [
        {"extra_info": dict(case="c", phase="step", backend=b, dtype="float32", size=s), "stats": {"median": t}}
        for b in ("numpy", "torch-cpu") for s, t in (("tiny", 1e-5), ("large", 1e-1))]}
    assert plot.series(results)[("c", "step")][("numpy", "float32")] == {"tiny": 1e-5, "large": 1e-1}
    out = plot.plot(results, tmp_path / "plot.png")
    assert out.stat().st_size > 1000
