"""Corpora for rbtw: download or import with checks, vocabularies, splits and batching.

    from rbtw.data import load_corpus, load_mnist, char_batches, word_batches, mnist_batches
    corpus = load_corpus("ptb_char")          # .train/.valid/.test int32 streams, .vocab, .level
    mnist = load_mnist(permuted=True, seed=0)  # .train/.valid/.test as (x (N, 784), y (N,))

Raw files live in a cache directory (``resolve_data_dir``): ``~/.cache/rbtw`` unless
``$RBTW_DATA`` or an explicit ``data_dir`` says otherwise.  ``rbtw data download NAME`` and
``rbtw data import NAME PATH`` put them there; ``rbtw data list`` shows what is present.
"""

from rbtw.data.batching import char_batches, mnist_batches, word_batches
from rbtw.data.corpus import Corpus, default_text_path, load_corpus, load_default, load_text
from rbtw.data.fetch import download, import_path
from rbtw.data.listing import dataset_rows
from rbtw.data.mnist import MNIST, load_mnist, pixel_permutation
from rbtw.data.registry import DATASETS, SOURCES
from rbtw.data.store import resolve_data_dir

__all__ = [
    "DATASETS", "SOURCES", "Corpus", "MNIST", "char_batches", "dataset_rows", "default_text_path",
    "download", "import_path", "load_corpus", "load_default", "load_mnist", "load_text",
    "mnist_batches", "pixel_permutation", "resolve_data_dir", "word_batches",
]
