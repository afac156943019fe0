"""A self-contained HTML report of NumPy-vs-torch agreement, one section per registry case.

    python -m agreement.report --out report.html          # all cases and scenarios, about 2 minutes
    python -m agreement.report --small --out small.html   # about 20 seconds

Per case: training curves of the reference and its torch twin (float32,
float64, bfloat16 and float16; TF32 on CUDA) with their per-step divergence
against the trajectory tolerance; the fit or decision boundary on
plot-friendly data (regression and classification models) or the function and
its derivative (activations, losses); histograms of element-wise gradient
error per parameter in the same dtypes; and, when a pytest-benchmark run was
saved, time and fraction of matrix-product peak against size per backend.
Per training scenario (agreement.scenarios): both sides' loss curves and
|NumPy - torch| per step against the long-run judge's tolerance, with the
comparable horizon marked.
"""

from agreement.report.build import build_report, write_report
from agreement.report.config import ReportConfig

__all__ = ["ReportConfig", "build_report", "write_report"]
