"""Sequential MNIST: IDX parsing, the 50k/10k/10k split and the optional pixel permutation.

IDX (big-endian): images ``0x00000803, N, 28, 28`` then N*784 uint8 pixels row by row;
labels ``0x00000801, N`` then N uint8 labels.  Pixels are scaled x = p / 255 (float32) and
each image is a sequence of 784 one-pixel steps.  Split as in the paper's reader:
train = the first 50,000 training images, valid = the last 10,000, test = the 10,000 test
images.  The permuted variant applies one fixed permutation of the 784 pixel positions,
drawn from ``numpy.random.default_rng(seed)``, to every image of every split.
"""

from dataclasses import dataclass

import numpy as np

from rbtw.errors import UserError
from rbtw.data.store import present_files, read_checked

N_PIXELS = 784
N_TRAIN = 50_000
_IMAGES, _LABELS = 0x803, 0x801


@dataclass
class MNIST:
    """Splits as ``(x, y)``: x float32 (N, 784) in [0, 1], y int64 (N,)."""

    train: tuple
    valid: tuple
    test: tuple
    permutation: np.ndarray | None = None  # (784,) pixel order, None when unpermuted
    status: str = "verified"


def parse_idx(data, where):
    """Array of an IDX file's content: images (N, 784) uint8 or labels (N,) uint8."""
    if len(data) < 8:
        raise UserError(f"{where}: not an IDX file (too short)")
    magic, n = np.frombuffer(data[:8], dtype=">u4")
    if magic == _LABELS:
        return _body(data, 8, (int(n),), where)
    if magic == _IMAGES:
        rows, cols = np.frombuffer(data[8:16], dtype=">u4")
        return _body(data, 16, (int(n), int(rows) * int(cols)), where)
    raise UserError(f"{where}: not an MNIST IDX file (magic 0x{int(magic):08x})")


def _body(data, offset, shape, where):
    need = offset + int(np.prod(shape))
    if len(data) != need:
        raise UserError(f"{where}: corrupt IDX file ({len(data):,} bytes, header says {need:,})")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _read(files, name):
    path, entry = files[name + ".gz"]
    return parse_idx(read_checked(path, entry), str(path))


def load_raw(data_dir=None):
    """``(train_images, train_labels, test_images, test_labels)`` as uint8 arrays."""
    files = present_files(data_dir, "mnist", "mnist")
    arrays = [_read(files, n) for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    for images, labels in (arrays[:2], arrays[2:]):
        if images.shape[1:] != (N_PIXELS,) or len(images) != len(labels):
            raise UserError("mnist: image and label files do not match")
    return arrays


def pixel_permutation(seed):
    """The fixed pixel order of permuted MNIST for ``seed``."""
    return np.random.default_rng(seed).permutation(N_PIXELS)


def load_mnist(data_dir=None, permuted=False, seed=0):
    """MNIST as float32 pixels / 255 and int64 labels, split 50k / 10k / 10k."""
    x_tr, y_tr, x_te, y_te = load_raw(data_dir)
    perm = pixel_permutation(seed) if permuted else None

    def prep(x, y):
        if perm is not None:
            x = x[:, perm]
        return x.astype(np.float32) / np.float32(255), y.astype(np.int64)

    return MNIST(prep(x_tr[:N_TRAIN], y_tr[:N_TRAIN]), prep(x_tr[N_TRAIN:], y_tr[N_TRAIN:]),
                 prep(x_te, y_te), perm)
