"""NumPy fixed-point reference of the accelerator datapath, written apart from the emulator.

Same equations as rbtw.accel.datapath (see there), computed on whole arrays: the gate
products are single integer matrix products Q.astype(int64) @ h over all columns at once
(the accumulator saturates once, at the end), the ROM interpolation and the cell update are
vectorised over the batch and the hidden units.  Must agree with the emulator bit for bit.
"""

import numpy as np

from rbtw.accel import fixed


def _shr(v, n):
    """Rounding arithmetic right shift by n (left shift if n < 0), elementwise on int64."""
    if n <= 0:
        return v * (1 << -n)
    return np.floor_divide(v + (1 << (n - 1)), 1 << n)


def _clip(v, bits):
    return np.clip(v, fixed.qmin(bits), fixed.qmax(bits))


def _interp(z, rom, range_log2, P, seg):
    Rq = 1 << (range_log2 + P)
    u = np.clip(z, -Rq, Rq) + Rq
    step = 1 << (P - seg)
    idx = u // step
    rem = u - idx * step
    top = rom.size - 1
    lo = rom[np.minimum(idx, top)]
    hi = rom[np.minimum(idx + 1, top)]
    return np.where(idx >= top, rom[top], lo + _shr((hi - lo) * rem, P - seg))


def reference_layer(layer, d, x, state, t0=0):
    """x (T, B, K) int64 or ids (T, B); state (h, c) int64 (B, H).  Returns hs, h, c."""
    sig = fixed.act_table("sigmoid", d.sig_range, d.seg_frac, d.act_bits, d.act_frac)
    tnh = fixed.act_table("tanh", d.tanh_range, d.seg_frac, d.act_bits, d.act_frac)
    Wh = layer.Wh.astype(np.int64)                          # (G, H)
    Wx = layer.Wx.astype(np.int64)                          # (G, K)
    H = Wh.shape[1]
    F, Fc, P, S = d.act_frac, d.cell_frac, d.pp_frac, d.scale_frac
    Fx = 0 if layer.one_hot else F
    h = np.array(state[0], dtype=np.int64)                  # (B, H)
    c = np.array(state[1], dtype=np.int64)
    T = x.shape[0]
    hs = np.empty((T,) + h.shape, dtype=np.int64)
    for j in range(T):
        r = min(t0 + j, layer.sh.shape[0] - 1)
        ah = _clip(h @ Wh.T, d.acc_bits)                    # (B, G)
        ax = Wx.T[x[j]] if layer.one_hot else _clip(np.asarray(x[j], dtype=np.int64) @ Wx.T, d.acc_bits)
        if layer.gru:
            h = _gru_step(layer, d, ah, ax, h, r, Fx, sig, tnh)
            hs[j] = h
            continue
        z = _clip(_shr(layer.sh[r] * ah, S + F + layer.fw_h - P)
                  + _shr(layer.sx[r] * ax, S + Fx + layer.fw_x - P) + layer.k[r], d.pp_bits)
        i = _interp(z[:, :H], sig, d.sig_range, P, d.seg_frac)
        f = _interp(z[:, H:2 * H], sig, d.sig_range, P, d.seg_frac)
        g = _interp(z[:, 2 * H:3 * H], tnh, d.tanh_range, P, d.seg_frac)
        o = _interp(z[:, 3 * H:], sig, d.sig_range, P, d.seg_frac)
        c = _clip(_shr(f * c, F) + _shr(i * g, 2 * F - Fc), d.cell_bits)
        u = _clip(_shr(layer.sc[r] * c, S + Fc - P) + layer.kc[r], d.pp_bits)
        h = _clip(_shr(o * _interp(u, tnh, d.tanh_range, P, d.seg_frac), F), d.act_bits)
        hs[j] = h
    return hs, h, c


def _gru_step(layer, d, ah, ax, h, r, Fx, sig, tnh):
    F, P, S = d.act_frac, d.pp_frac, d.scale_frac
    H = h.shape[1]
    A = _clip(_shr(layer.sh[r] * ah, S + F + layer.fw_h - P) + layer.k[r], d.pp_bits)      # (B, 3H)
    Bx = _clip(_shr(layer.sx[r] * ax, S + Fx + layer.fw_x - P) + layer.kb[r], d.pp_bits)
    gate = _clip(A[:, :2 * H] + Bx[:, :2 * H], d.pp_bits)
    rr = _interp(gate[:, :H], sig, d.sig_range, P, d.seg_frac)
    u = _interp(gate[:, H:], sig, d.sig_range, P, d.seg_frac)
    n = _interp(_clip(Bx[:, 2 * H:] + _shr(rr * A[:, 2 * H:], F), d.pp_bits), tnh, d.tanh_range, P, d.seg_frac)
    return _clip(_shr(((1 << F) - u) * n + u * h, F), d.act_bits)
