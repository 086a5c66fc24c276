"""rbtw: Learning Recurrent Binary/Ternary Weights (Ardakani et al., ICLR 2019) in NumPy and Numba."""

__version__ = "0.1.0"
