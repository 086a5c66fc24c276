"""Hand-written layers: each a ``forward(...) -> (out, cache)`` / ``backward(dout, cache)`` pair.

Modules: bn (per-time-step batch norm), lstm (BN-LSTM), gru (BN-GRU), cell (what the two share),
linear, embedding (lookup and one-hot input), loss (masked softmax cross-entropy), dropout.
The fused (Numba) step kernels: lstm_fused, gru_fused, and fused_common (what they share);
workspace pools their per-pass buffers.
"""

from rbtw import numba_cache  # noqa: F401  (before any @njit: the Numba cache sees edits to callees)
