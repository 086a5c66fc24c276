"""Hand-written layers: each a ``forward(...) -> (out, cache)`` / ``backward(dout, cache)`` pair.

Modules: bn (per-time-step batch norm), lstm (BN-LSTM), gru (BN-GRU), cell (what the two share),
linear, embedding (lookup and one-hot input), loss (masked softmax cross-entropy), dropout.
"""
