"""The tutorials' whole training runs side by side (issue 12): NumPy by hand against
torch as the tutorial writes it, mini-batches, epochs and runs of hundreds of steps,
every step judged against the float64 NumPy reference.

* ``data``: the scenarios' data sets, generated with seeded NumPy RNGs;
* ``numpy_side``: each scenario's training run as a NumPy ``Program`` (never imports torch);
* ``torch_side``: the same runs as the tutorials write them (nn.Module, torch.optim,
  DataLoader; never imports ``reference``), and the batch order of a seeded DataLoader;
* ``judge``: the long-run judge (Monte-Carlo rounding spread and the comparable horizon);
* ``catalog``: the eight scenarios, each wiring one NumPy program to its torch forms;
* ``python -m agreement.scenarios``: all of them on every available device.

Nothing is imported here, so that the NumPy side can be imported without torch.
See docs/scenarios.md.
"""
