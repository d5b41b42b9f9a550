"""rnnkit: recurrent neural networks on PyTorch, from the equations to real tasks."""

__version__ = "0.7.0"
