"""How far past the tolerance a 1% error in one gradient lands, at realistic sizes.

    python tests/detection_stats.py [--kind model] [--sizes tutorial large]

For every registry case of the kind, size and dtype: the correct reference's
worst error/tolerance ratio, and for each parameter, the torch comparison's
ratio when the reference's gradient of that parameter alone is scaled by 1.01
(above 1 is caught). Built with ``case.build(size, float64, 0)``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from agreement.registry import cases
from agreement.run import evaluate


def scaled(case, name, factor):
    def reference(params, data, **hyper):
        loss, grads = case.reference(params, data, **hyper)
        return loss, {**grads, name: grads[name] * factor}

    return reference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="model")
    parser.add_argument("--sizes", nargs="+", default=["tutorial", "large"])
    parser.add_argument("--factor", type=float, default=1.01)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        for case in cases(kind=args.kind):
            for size in args.sizes:
                for dtype in (np.float64, np.float32):
                    example = case.build(size, np.float64, 0)
                    start = time.perf_counter()
                    correct = max(r.ratio for r in evaluate(case, example, dtype))
                    seconds = time.perf_counter() - start
                    caught = {name: min(r.ratio for r in evaluate(case, example, dtype,
                                                                  reference=scaled(case, name, args.factor))
                                        if r.what == f"grad {name}" and r.device.startswith("torch"))
                              for name in example.params}
                    print(f"{case.name:28} {size:8} {np.dtype(dtype).name:7} correct {correct:.2g}; "
                          f"{args.factor:g}x gradient: " + ", ".join(f"{k} {v:.3g}x" for k, v in caught.items())
                          + f"  ({seconds:.2f} s per evaluation)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
