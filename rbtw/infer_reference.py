"""The packed engine's equations in plain NumPy float64: the reference rbtw.infer is tested against.

Dimensions: T time, B batch, K inputs of a layer, H hidden, G gate rows, V vocabulary.

Written apart from the engine, one step at a time on whole arrays, with the integer matrices
unpacked (rbtw.kernels.unpack) and exact tanh and σ (docs/design.md §3.1):

    LSTM  z = s_h[r] ⊙ (Q_h h) + s_x[r] ⊙ (Q_x x) + k[r],  r = min(t, rows − 1)
          c = σ(z_f) ⊙ c + σ(z_i) ⊙ tanh(z_g);   h = σ(z_o) ⊙ tanh(s_c[r] ⊙ c + k_c[r])
    GRU   A = s_h ⊙ (Q_h h) + k_a,  B = s_x ⊙ (Q_x x) + k_b
          r = σ(A_r + B_r), u = σ(A_u + B_u), n = tanh(B_n + r ⊙ A_n), h = (1 − u) ⊙ n + u ⊙ h
    logits = h W + b      (LMs: every step; the classifier: the last step)

A char LM's input is the one-hot vector of each id, multiplied like any other input.
"""

import numpy as np

from rbtw.kernels import PackedMatrix, unpack


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _matrix(export, name):
    m = export.matrix(name)
    return (unpack(m) if isinstance(m, PackedMatrix) else m).astype(np.float64)   # (G, K)


def reference_forward(export, inputs, state=None, t0=0):
    """(logits, final state per layer) of ``export`` on inputs, as PackedEngine.forward.

    inputs: (T, B) ids (char and word LMs) or (T, B, X) features (classifier); state: per layer
    (h, c) (LSTM) or (h,) (GRU), each (B, H), default the export's h0 and c0."""
    spec, A = export.spec, export.arrays
    H, gru = spec["hidden"], spec["cell"] == "gru"
    if spec["kind"] == "char":
        x = np.eye(spec["n_in"])[np.asarray(inputs)]                          # (T, B, V)
    elif spec["kind"] == "word":
        x = A["emb.E"].astype(np.float64)[np.asarray(inputs)]                # (T, B, E)
    else:
        x = np.asarray(inputs, dtype=np.float64)
    T, B = x.shape[:2]
    final = []
    for k in range(spec["layers"]):
        p = f"rnn{k}."
        Qh, Qx = _matrix(export, p + "W_h"), _matrix(export, p + "W_x")
        tab = {n[len(p):]: a.astype(np.float64) for n, a in A.items() if n.startswith(p) and
               ("scale" in n or "shift" in n)}
        if state is None:
            h = np.tile(A[p + "h0"].astype(np.float64), (B, 1))
            c = None if gru else np.tile(A[p + "c0"].astype(np.float64), (B, 1))
        else:
            h = np.array(state[k][0], dtype=np.float64)
            c = None if gru else np.array(state[k][1], dtype=np.float64)
        hs = np.empty((T, B, H))
        for j in range(T):
            r = min(t0 + j, tab["scale_h"].shape[0] - 1)
            a, b = h @ Qh.T, x[j] @ Qx.T                                      # (B, G)
            if gru:
                Aa = tab["scale_h"][r] * a + tab["shift_a"][r]
                Bb = tab["scale_x"][r] * b + tab["shift_b"][r]
                rr = _sigmoid(Aa[:, :H] + Bb[:, :H])
                u = _sigmoid(Aa[:, H:2 * H] + Bb[:, H:2 * H])
                n = np.tanh(Bb[:, 2 * H:] + rr * Aa[:, 2 * H:])
                h = (1 - u) * n + u * h
            else:
                z = tab["scale_h"][r] * a + tab["scale_x"][r] * b + tab["shift"][r]
                c = _sigmoid(z[:, H:2 * H]) * c + _sigmoid(z[:, :H]) * np.tanh(z[:, 2 * H:3 * H])
                h = _sigmoid(z[:, 3 * H:]) * np.tanh(tab["scale_c"][r] * c + tab["shift_c"][r])
            hs[j] = h
        final.append((h,) if gru else (h, c))
        x = hs
    out = x[-1] if spec["kind"] == "classify" else x
    return out @ A["out.W"].astype(np.float64) + A["out.b"].astype(np.float64), final
