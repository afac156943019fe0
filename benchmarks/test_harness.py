"""The benchmark machinery itself: FLOP counts, resets, summary table (plain tests)."""

from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np
import pytest
import torch

from agreement.optimizers import OPTIMIZERS
from agreement.precision import BFLOAT16, round_to
from agreement.registry import CASES, cases
from benchmarks import bodies, floor, flops, peak, sizes, summary
from benchmarks.settings import OPTIMIZER, cuda_available, cuda_skip_reason, dtype_name, itemsize

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
        body = bodies.torch_body(case, ex, "step", "cpu", np.float64)
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


# ---------------------------------------------------------------- floor, sizes, CUDA graphs


@pytest.mark.parametrize("size", ["tiny", "tutorial"])
@pytest.mark.parametrize("name", [c.name for c in cases(trainable=True)])
def test_both_floor_recorders_see_the_same_products_as_the_step(name, size):
    """NumPy's recorder (the fast model's matmuls) and torch's (mm/addmm of the twin)
    find products of the same FLOPs; for the two-layer nets, the hand count of the
    first test above. NumPy's two-layer step folds each bias into its products (one
    more row of the weights, reference/fast.py): its floor cuts them back to the
    math's, as torch's replays addmm without its bias."""
    case = CASES[name]
    ex = case.build(size, np.float32, 0)
    numpy_calls, torch_calls = floor.numpy_products(case, ex), floor.torch_products(case, ex)
    assert floor.flops(numpy_calls) == floor.flops(torch_calls) > 0
    if name.startswith("two_layer"):
        (n, d_in), (_, hidden), (_, d_out) = ex.data["X"].shape, ex.params["W1"].shape, ex.params["W2"].shape
        assert len(numpy_calls) == len(torch_calls) == 5
        assert floor.flops(numpy_calls) == 4 * n * d_in * hidden + 6 * n * hidden * d_out
    assert floor.fast.np is np, "the recorder was left in place"


def test_a_folded_bias_is_cut_out_of_the_numpy_floor_which_reads_the_steps_buffers():
    """The two-layer fast model multiplies [X, 1] by [[W1], [b1]]; its floor multiplies
    the X and W1 parts of those very buffers."""
    case = CASES["two_layer_classifier"]
    ex = case.build("tiny", np.float64, 0)
    calls = floor.numpy_products(case, ex)
    (n, d_in), (_, hidden) = ex.data["X"].shape, ex.params["W1"].shape
    x, w1, h = calls[0]
    assert x.shape == (n, d_in) and w1.shape == (d_in, hidden) and h.shape == (n, hidden)
    assert not x.flags.c_contiguous and x.strides[0] == (d_in + 1) * x.itemsize  # a view into [X, 1]
    np.testing.assert_array_equal(x, ex.data["X"])
    np.testing.assert_array_equal(w1, ex.params["W1"])
    unbiased = dict(ex.hyper, bias=False)
    plain = floor.numpy_products(case, type(ex)({k: ex.params[k] for k in ("W1", "W2")}, ex.data, unbiased))
    assert [(a.shape, b.shape, o.shape) for a, b, o in calls] == [(a.shape, b.shape, o.shape) for a, b, o in plain]


def test_the_floor_replays_the_steps_own_operands():
    """The data matrix X enters the forward product and the weight gradient's as the
    same buffer (X and X.T), as in the step, on NumPy's side and on torch's."""
    case = CASES["two_layer_regression"]
    ex = case.build("tiny", np.float64, 0)
    calls = floor.numpy_products(case, ex)
    first, last = calls[0][0], calls[-1][0]
    assert np.shares_memory(first, last) and last.shape == first.shape[::-1]
    floor.numpy_run(calls)()
    for a, b, out in calls:  # the replay computed each product into its output (none overwrites an earlier operand)
        np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-300)
    torch_calls = floor.torch_products(case, ex)
    x_forward, x_backward = torch_calls[0][0], torch_calls[-1][1]  # X in addmm, and in dW1 = dh^T X
    assert floor.storage_key(x_forward) == floor.storage_key(x_backward)
    replayed = floor._torch_operands(torch_calls, np.float64, "cpu")
    assert replayed[0][0].data_ptr() == replayed[-1][1].data_ptr()  # one buffer for both
    assert all(a.stride() == m.stride() and a.dtype == torch.float64
               for (a, _, _), (m, _, _) in zip(replayed, torch_calls, strict=True))
    floor.torch_run(torch_calls, np.float32, "cpu")()


def test_xl_is_built_by_the_case_and_never_seen_by_the_registry(monkeypatch):
    from agreement.cases.common import MODEL_SIZES
    from agreement.cases.common import sizes as registry_sizes

    monkeypatch.setitem(sizes.BENCH_ONLY_SIZES, "xl", dict(N=3, D_in=4, H=5, D_out=2))
    ex = sizes.build(CASES["two_layer_classifier"], "xl", np.float32)
    assert ex.data["X"].shape == (3, 4) and ex.params["W2"].shape == (5, 2)
    assert "xl" not in MODEL_SIZES and "xl" not in registry_sizes()
    assert all("xl" not in c.sizes for c in cases())


def test_xl_is_timed_on_cuda_only():
    from benchmarks.test_training import _grid

    xl = [p for p in _grid() if p.values[2] == "xl"]
    assert {p.values[0].name for p in xl} == set(sizes.XL_CASES) and {p.values[1] for p in xl} == {"step"}
    for p in xl:
        reasons = [m.kwargs.get("reason", "") for m in p.marks if m.name in ("skip", "skipif")]
        if p.values[4] in sizes.XL_BACKENDS:
            assert any(m.name == "cuda" for m in p.marks)
        else:
            assert p.values[4] in ("numpy", "torch-cpu") and reasons == [sizes.XL_SKIP_REASON]


def test_bfloat16_rows_are_torch_steps_and_the_cpu_times_the_small_sizes_only():
    from benchmarks.settings import LOW_PRECISION_CPU_SIZES, LOW_PRECISION_CPU_SKIP
    from benchmarks.test_training import _grid

    low = [p for p in _grid() if p.values[3] is BFLOAT16]
    assert {p.values[1] for p in low} == {"step"}
    assert {p.values[4] for p in low} == {"torch-cpu", "torch-cuda", "torch-cuda-graph"}  # NumPy has no bfloat16
    assert {p.values[0].name for p in low} == {c.name for c in cases(trainable=True)}
    for p in low:
        reasons = [m.kwargs.get("reason", "") for m in p.marks if m.name == "skip"]
        cpu_skipped = p.values[4] == "torch-cpu" and p.values[2] not in LOW_PRECISION_CPU_SIZES
        assert reasons == ([LOW_PRECISION_CPU_SKIP] if cpu_skipped and p.values[2] != "xl" else
                           [sizes.XL_SKIP_REASON] if p.values[4] == "torch-cpu" and p.values[2] == "xl" else [])
        assert "bfloat16" in p.id


@pytest.mark.parametrize("phase", ["step", "fwd_bwd"])
def test_a_bfloat16_body_trains_in_bfloat16_on_the_example_values(phase):
    case = CASES["two_layer_classifier"]
    ex = sizes.build(case, "tiny", BFLOAT16)
    assert ex.params["W1"].dtype == np.float32
    assert np.array_equal(ex.params["W1"], round_to(BFLOAT16, ex.params["W1"]))  # bfloat16 values
    module, batch, _ = bodies._torch_step_parts(case, ex, "cpu", BFLOAT16)
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16} and batch["X"].dtype == torch.bfloat16
    values = lambda arrays: np.sort(np.concatenate([np.ravel(a) for a in arrays]))  # noqa: E731  (layouts differ)
    np.testing.assert_array_equal(values(p.detach().float().numpy() for p in module.parameters()),
                                  values(ex.params.values()))  # the example's values, exactly
    loss = bodies.torch_body(case, ex, phase, "cpu", BFLOAT16).run()
    assert loss.dtype == torch.bfloat16


def test_bytes_count_the_timed_precision_not_its_storage_here():
    ex = sizes.build(CASES["two_layer_classifier"], "tiny", BFLOAT16)
    labels = ex.data["labels"].nbytes
    full = flops.call_bytes(ex, "step")
    assert flops.call_bytes(ex, "step", itemsize(BFLOAT16)) - labels == (full - labels) // 2


@pytest.mark.parametrize("layout", peak.LAYOUTS)
@pytest.mark.parametrize("library, dtype", [("numpy", np.float64), ("torch", np.float64), ("torch", BFLOAT16)])
def test_each_peak_layout_computes_the_product_it_names(library, dtype, layout):
    call = peak._product(library, "cpu", dtype_name(dtype), 8, layout)
    out = call()
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((8, 8)) for _ in range(2))
    a, b = (x.T if flag == "T" else x for x, flag in zip((a, b), layout, strict=True))
    got = out.double().numpy() if torch.is_tensor(out) else out
    np.testing.assert_allclose(got, a @ b, rtol=0.05 if dtype is BFLOAT16 else 1e-12, atol=0.1 if dtype is BFLOAT16
                               else 1e-12)  # bfloat16: 8 bits of each input, 2^-8 of each term


def test_bfloat16_peaks_are_torchs_on_the_cpu():
    assert peak.libraries("cpu", BFLOAT16) == ("torch",) and peak.libraries("cpu", np.float32) == ("numpy", "torch")
    assert peak.size("cpu", BFLOAT16) == peak.LOW_PRECISION_CPU_N and peak.size("cpu", np.float32) == 1024
    rates = peak.matmul_peak("cpu", BFLOAT16, smoke=True)
    assert set(rates) == {"n", "torch", "peak"} and rates["peak"] > 0


def test_summary_shows_the_floor_beside_the_peak_and_judges_it():
    def row(backend, median, floor_s):
        return dict(case="two_layer_regression", phase="step", size="tutorial", dtype="float32", backend=backend,
                    median_s=median, min_s=median, flops=10, peak_fraction=0.5, peak_fraction_best_round=0.5,
                    peak_gflops=1.0, floor_s=floor_s, floor_fraction=floor_s / median,
                    floor_fraction_best_round=floor_s / median)

    rows = [row("numpy", 1e-3, 0.8e-3), row("torch-cpu", 2e-3, 0.9e-3)]
    assert "50% mm 80% fl" in "\n".join(summary.table(rows))
    assert any("80% of floor" in line for line in summary.floor_table(rows))
    lines = summary.targets(rows)
    assert any(line.startswith("met  numpy step >= 75% of its floor") for line in lines)
    rows[0].update(median_s=1.2e-3, floor_fraction=0.8e-3 / 1.2e-3)
    assert any(line.startswith("MISS numpy step >= 75% of its floor") for line in summary.targets(rows))


def test_the_machine_is_named():
    from benchmarks import machine

    about = machine.description()
    assert about["cpu_model"] and about["numpy_blas"] and about["torch_blas"]
    assert machine.backend_blas("numpy-readable") == machine.numpy_blas()


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())
@pytest.mark.parametrize("name", ["two_layer_regression", "two_layer_classifier"])
def test_a_graph_replay_is_the_eager_step(name):
    """The captured step, replayed, does what the eager step does from the same state:
    the same loss and the same parameters after each of two steps (it reads the live
    parameters, writes fresh gradients, and updates momentum like the eager loop)."""
    from benchmarks.cuda_graphs import WARMUP_CALLS, capture_step

    case = CASES[name]
    ex = case.build("tiny", np.float64, 0)
    module, batch, optimizer = bodies._torch_step_parts(case, ex, "cuda", np.float64)
    eager_module, eager_batch, eager_optimizer = bodies._torch_step_parts(case, ex, "cuda", np.float64)

    eager_step = bodies.training_step(eager_module, eager_batch, eager_optimizer)
    graph, loss = capture_step(module, batch, optimizer)  # its warm-up took WARMUP_CALLS eager steps
    for _ in range(WARMUP_CALLS):
        eager_step()
    for _ in range(2):
        graph.replay()
        expected = eager_step()
        torch.testing.assert_close(loss, expected)
        for p, q in zip(module.parameters(), eager_module.parameters(), strict=True):
            torch.testing.assert_close(p, q)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())
@pytest.mark.parametrize("name", ["two_layer_regression", "two_layer_classifier"])
def test_graph_rounds_start_where_eager_rounds_start(name):
    """A timed round of the captured step and one of the eager step start from the same
    parameters and momentum and end at the same ones. The sum-of-squares regression at
    the tutorial size reaches inf within the capture's warm-up steps, so a graph body
    that kept their state would time steps on inf and NaN."""
    made, make = [], bodies._torch_step_parts

    def parts(*args):
        made.append(make(*args))
        return made[-1]

    case = CASES[name]
    ex = case.build("tutorial", np.float32, 0)
    with mock.patch.object(bodies, "_torch_step_parts", parts):
        eager, graph = bodies.torch_body(case, ex, "step", "cuda", np.float32), bodies.torch_graph_body(
            case, ex, np.float32)
    for body in (eager, graph):
        body.reset()
        body.run()
    (eager_module, *_), (graph_module, *_) = made
    for p, q in zip(graph_module.parameters(), eager_module.parameters(), strict=True):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, q)
