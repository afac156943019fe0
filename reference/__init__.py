"""Pure-NumPy reference: forward passes, hand-derived gradients, optimizer updates.

Conventions follow torch wherever the math leaves a choice: relu'(0) = 0,
loss reductions "mean"/"sum" as torch.nn, BCELoss's clamps, softplus's
threshold, SGD's first-step momentum buffer. This package never imports torch.
"""
