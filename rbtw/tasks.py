"""A task's data: its splits, how to batch them, and the model they imply.

    data = load_task_data(config)            # TaskData: train/valid/test, vocab, n_in, n_out
    spec = model_spec(config, data)          # rbtw.models.ModelSpec of the run's model
    data = given_text(ids, vocab)            # any token stream as a task's test split

Task "text" trains a character LM on any UTF-8 file (``text_file``), cut 90/5/5 % unless
``text_split`` says otherwise; its symbols are the file's characters (rbtw.symbols: models
made before were byte-level, and their data is loaded as bytes again).  A run records the file's absolute path and the sha256 of its
bytes in its configuration; loading the task again (resume, eval) with a file whose bytes
changed is an error.
"""

from dataclasses import replace

import numpy as np

from rbtw.config import N_PIXELS, TEXT_SPLITS
from rbtw.errors import UserError


class TaskData:
    """The splits of a task and how to batch them.

    char/word: streams of ids with ``vocab`` of ``symbols`` (rbtw.symbols: "bytes", "chars",
    "words"; None: the kind's usual); classify: (x, y) arrays.
    """

    def __init__(self, kind, train, valid, test, vocab=None, n_in=None, n_out=None, source=None,
                 text_sha256=None, symbols=None):
        from rbtw.symbols import recorded
        self.kind, self.train, self.valid, self.test = kind, train, valid, test
        self.vocab = vocab
        self.symbols = recorded(kind, symbols, vocab)
        self.n_in = n_in if n_in is not None else len(vocab)
        self.n_out = n_out if n_out is not None else len(vocab)
        self.source = source
        self.text_sha256 = text_sha256   # task "text": sha256 of the file's bytes

    def batches(self, split, config, rng=None, batch=None):
        """Minibatches of one split as (inputs, targets).

        char: (T, B) ids and their successors; word: the same from contiguous streams;
        classify: (784/k, B, k) pixels and (B,) labels, k = pixels_per_step.
        """
        from rbtw.data import char_batches, mnist_batches, word_batches
        data = getattr(self, split)
        B = batch or config.batch
        if self.kind == "char":
            yield from char_batches(data, config.seq_len, B, rng)
        elif self.kind == "word":
            yield from word_batches(data, config.seq_len, B)
        else:
            k = config.pixels_per_step
            for x, y in mnist_batches(data[0], data[1], B, rng):
                yield np.ascontiguousarray(x.reshape(len(x), N_PIXELS // k, k).transpose(1, 0, 2)), y


def load_task_data(config, data_dir=None, symbols=None):
    """Load the data set of ``config.task`` (raises UserError with a hint when it is absent).

    ``symbols``: the text task's, as its model records them ("bytes" for a model made before
    characters; None: characters).
    """
    from rbtw.data import load_corpus, load_mnist
    if config.task == "text":
        return load_text_task(config, symbols or "chars")
    if config.kind == "classify":
        m = load_mnist(data_dir, permuted=config.task == "pmnist", seed=config.seed)
        return TaskData("classify", m.train, m.valid, m.test, n_in=config.pixels_per_step, n_out=10,
                        source=config.task)
    corpus = load_corpus(config.task, data_dir)
    return TaskData(corpus.level, corpus.train, corpus.valid, corpus.test, vocab=list(corpus.vocab),
                    source=config.task, symbols=corpus.symbols)


def load_text_task(config, symbols="chars"):
    """The text task: ``config.text_file`` cut by ``config.text_split``, its hash checked.

    Every split must hold more than one segment of ``seq_len`` symbols.
    """
    from rbtw.data import load_text
    splits = tuple(config.text_split or TEXT_SPLITS)
    corpus = load_text(config.text_file, splits, sha256=config.text_sha256, symbols=symbols)
    for split in ("train", "valid", "test"):
        n = len(getattr(corpus, split))
        if n <= config.seq_len:
            raise UserError(f"{config.text_file}: the {split} split has {n:,} symbols, too few for "
                            f"sequences of {config.seq_len}; use a longer text, a smaller --seq-len "
                            "or another --split")
    return TaskData("char", corpus.train, corpus.valid, corpus.test, vocab=list(corpus.vocab),
                    source=config.text_file, text_sha256=corpus.info["sha256"], symbols=corpus.symbols)


def given_text(ids, vocab, kind="char", symbols=None):
    """A TaskData whose test split is the token stream ``ids`` (train and valid empty)."""
    ids = np.asarray(ids, dtype=np.int64)
    return TaskData(kind, ids[:0], ids[:0], ids, vocab=vocab, symbols=symbols)


def fit_to_given(config, n):
    """The config that evaluates ``n`` given tokens (:func:`given_text`) whole: T (char) or B
    (word) shrunk so that they make at least one batch, and no limit on the number of batches."""
    if config.kind == "char":
        return replace(config, seq_len=min(config.seq_len, n - 1), eval_max_batches=None)
    B = config.eval_batch_size
    return replace(config, eval_batch=max(1, min(B, n // 2)), eval_max_batches=None)


def sequences(data, split, config):
    """How many sequences one epoch of ``split`` holds: segments of T (char LM, from offset 0),
    positions of a column (word LM: the most columns B can be), or examples (classifier)."""
    part = getattr(data, split)
    if data.kind == "classify":
        return len(part[0])
    if data.kind == "word":
        return len(part) // 2
    return max((len(part) - 1) // config.seq_len, 0)


def count_batches(data, split, config, batch=None):
    """How many batches one pass over ``split`` makes with ``batch`` (default config.batch)."""
    B = batch or config.batch
    part = getattr(data, split)
    if data.kind == "word":
        L = len(part) // B
        return -(-(L - 1) // config.seq_len) if L >= 2 else 0
    return -(-sequences(data, split, config) // B)


def check_fits(config, data):
    """Refuse a batch that the training split cannot fill (``--batch 100000000``), and an
    evaluation batch that neither evaluation split can."""
    n = sequences(data, "train", config)
    if n == 0 and data.kind == "char":
        raise UserError(f"seq_len (--seq-len) {config.seq_len:,} leaves no sequence in the training split "
                        f"({len(data.train):,} symbols)")
    unit = {"char": f"segments of {config.seq_len}", "word": "columns of two or more words",
            "classify": "examples"}[data.kind]
    if config.batch > n:
        raise UserError(f"batch (--batch) {config.batch:,} is more than the training split holds "
                        f"({n:,} {unit}); choose --batch {max(n, 1):,} or less")
    m = max(sequences(data, "valid", config), sequences(data, "test", config))
    if config.eval_batch is not None and config.eval_batch > max(m, 1):
        raise UserError(f"eval_batch (--eval-batch) {config.eval_batch:,} is more than the evaluation "
                        f"splits hold ({m:,} {unit}); choose --eval-batch {max(m, 1):,} or less")


def model_spec(config, data):
    """The ModelSpec of ``config``'s model on ``data`` (its input and output sizes)."""
    from rbtw import models
    return models.ModelSpec(
        kind=config.kind, n_in=data.n_in, n_out=data.n_out, cell=config.cell, hidden=config.hidden,
        layers=config.layers, emb=config.emb, dropout=config.dropout, quant=config.quant,
        stochastic=config.stochastic, bn=config.bn, h0_noise=config.h0_noise, t_max=config.t_max)
