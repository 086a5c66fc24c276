"""Central finite differences in float64, for the gradient checks."""

import numpy as np


def numeric_grad(f, arr, h=1e-6):
    """d f() / d arr by the five-point central difference (error O(h⁴)); ``arr`` is perturbed in
    place and restored.  BN near a small batch variance is strongly curved: the plain two-point
    difference (error O(h²)) was off by up to 1e-5 relative there."""
    assert arr.flags.c_contiguous, "perturbing a copy would change nothing"
    g = np.zeros_like(arr, dtype=np.float64)
    flat = arr.reshape(-1)
    gflat = g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        values = []
        for step in (2 * h, h, -h, -2 * h):
            flat[k] = old + step
            values.append(f())
        flat[k] = old
        gflat[k] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
    return g


def assert_grad_close(analytic, numeric, name, rtol=1e-5, atol=1e-7):
    """Compare gradients with a tolerance scaled to the gradient's size."""
    analytic = np.asarray(analytic, dtype=np.float64)
    scale = max(1.0, float(np.abs(numeric).max()))
    err = float(np.abs(analytic - numeric).max())
    assert err <= atol * scale + rtol * float(np.abs(numeric).max()), (
        f"gradient of {name}: max abs error {err:.3g}, max |grad| {np.abs(numeric).max():.3g}")


def random_bn_stats(stats, rng):
    """Fill BN population statistics in place with values away from the initial ones:
    means N(0, 0.5²), variances U(0.5, 2).  Returns ``stats``."""
    for k, v in stats.items():
        if k.startswith("mean"):
            v[:] = rng.normal(0, 0.5, v.shape)
        elif k.startswith("var"):
            v[:] = rng.uniform(0.5, 2.0, v.shape)
    return stats
