"""The reference's models written as a PyTorch user writes them: nn.Module,
torch loss modules, autograd and torch.optim. Runs on any device and dtype.

This package never imports ``reference``: the two implementations must stay
independent or comparing them proves nothing.
"""
