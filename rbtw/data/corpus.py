"""Text corpora as id streams: tokenisation, vocabularies, splits and the prepared-data cache.

Symbols (rbtw.symbols).  The character-level corpora are read at the level of UTF-8 *bytes*,
as the paper's readers do (War and Peace has 83 distinct bytes but 82 distinct characters):
``vocab[i]`` is ``chr(b)`` for byte ``b``, the character itself for ASCII text.  A user's own
text (``load_text``, task "text") is read as Unicode *characters* (code points): ``vocab[i]``
is a character of the file, so a model of it generates only that file's characters.  A text
must be valid UTF-8.  Word-level PTB: whitespace-separated tokens, each line followed by
``<eos>``.

PTB characters are derived from the word files, one line at a time (Mikolov's char files):

    line "  the cat sat \\n"  ->  symbols  t h e _ c a t _ s a t \\n

i.e. words joined by '_' and each line closed by an end-of-line symbol ('\\n'): 50 symbols,
5,017,482 / 393,042 / 442,423 symbols in train / valid / test.

Splits.  PTB ships its own.  Single texts are cut contiguously, in order:
train = ids[:round(f0 n)], valid = the next round(f1 n), test = the rest.  text8 uses
90/5/5 % (= 90M/5M/5M of 10^8, the standard split; a fragment uses the same fractions);
War and Peace and Linux use 80/10/10 % as in Karpathy et al. (2015), the corpora's source;
the embedded default uses 90/5/5 %.

Vocabulary order: bytes by value, characters by code point; words by descending train
frequency, ties alphabetical.  Char vocabularies of single texts come from the whole text; PTB vocabularies
from train (valid/test symbols outside it are an error).

Prepared data is cached as ``prepared/<name>.npz`` (train/valid/test ids, stored as
uint8/uint16 when the vocabulary fits, loaded as int32) beside
``prepared/<name>.vocab.json`` (level, vocab, splits, and the sha256 of the raw files it
was made from).  The npz also holds ``origin``, a sha256 over the raw files' sha256 and the
vocabulary's fingerprint, so that its ids belong to that vocab.json and those raw files (a
stale npz beside a newer vocab.json, or one copied from elsewhere, is not read).  It is
prepared again whenever the raw files change; the raw files themselves are checked against
their manifest on every load (rbtw.data.store.present_files), and the bytes a corpus is
prepared from against the sha256 the manifest records for them.
"""

import collections
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbtw.errors import UserError
from rbtw.archive import read_arrays, write_arrays
from rbtw.fileio import atomic_open
from rbtw.data.registry import DATASETS, SOURCES
from rbtw.data.store import (normalise_newlines, present_files, read_checked,
                             source_dir, weakest)

PREPARED_FORMAT = 2
EOS = "<eos>"
DEFAULT_TEXT = "carroll-alice.txt"


@dataclass
class Corpus:
    """Id streams of one corpus; ``vocab[i]`` is the symbol (char or word) with id ``i``."""

    name: str
    level: str  # "char" or "word"
    vocab: list
    train: np.ndarray  # (N_train,) int32
    valid: np.ndarray  # (N_valid,) int32
    test: np.ndarray  # (N_test,) int32
    status: str = "verified"  # verified | size-checked | fragment | embedded | custom
    info: dict = field(default_factory=dict)
    symbols: str = ""  # "bytes", "chars" or "words" (rbtw.symbols); "" : the level's usual

    def __post_init__(self):
        self.symbols = self.symbols or ("words" if self.level == "word" else "bytes")

    @property
    def vocab_size(self):
        return len(self.vocab)

    @property
    def vocab_sha256(self):
        """Fingerprint of the vocabulary (ids included): store it in a checkpoint, compare later."""
        return vocab_fingerprint(self.vocab)

    def encode(self, text):
        """Ids of ``text`` (a str) under the corpus's symbols (rbtw.symbols.encode)."""
        from rbtw.symbols import encode
        return np.array(encode(text, self.vocab, self.symbols), dtype=np.int32)

    def decode(self, ids):
        """Text of ``ids`` (rbtw.symbols.decode)."""
        from rbtw.symbols import decode
        return decode(ids, self.vocab, self.symbols)


def vocab_fingerprint(vocab):
    """sha256 of the vocabulary list as JSON."""
    return hashlib.sha256(json.dumps(list(vocab), ensure_ascii=True).encode()).hexdigest()


def _spec(name):
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r} (choose from: {', '.join(DATASETS)})")
    spec = DATASETS[name]
    if spec.level not in ("char", "word"):
        raise UserError(f"{name!r} is not a text corpus: use load_mnist")
    return spec


def load_corpus(name, data_dir=None):
    """Load a text corpus by name: default, ptb_char, ptb_word, warpeace, linux or text8."""
    spec = _spec(name)
    if spec.source is None:
        return load_default()
    files = present_files(data_dir, name, spec.source)
    sources = {raw: e["sha256"] for raw, (_, e) in files.items()}
    prep = source_dir(data_dir, spec.source) / "prepared"
    corpus = _load_prepared(prep, spec, sources)
    if corpus is None:
        corpus = _PREPARE[spec.level if spec.source != "ptb" else name](spec, files)
        corpus.info.update(sources=sources)
        _save_prepared(prep, corpus)
    corpus.status = _status(files)
    return corpus


def _status(files):
    return weakest([e["status"] for _, e in files.values()])


def default_text_path():
    """Where the embedded default corpus lives: inside the installed package
    (``rbtw/data/carroll-alice.txt``, copied there by the build, setup.py), or in a source
    checkout at ``<repository>/data/carroll-alice.txt``."""
    here = Path(__file__).resolve().parent
    for path in (here / DEFAULT_TEXT, here.parents[1] / "data" / DEFAULT_TEXT):
        if path.is_file():
            return path
    return here / DEFAULT_TEXT


def load_default():
    """The embedded default corpus (needs nothing downloaded); splits 90/5/5 %."""
    path = default_text_path()
    if not path.is_file():
        raise UserError(f"embedded default corpus missing: {path} (a broken installation: "
                        "reinstall rbtw)")
    corpus = text_corpus("default", path.read_bytes(), DATASETS["default"].splits, str(path))
    corpus.status = "embedded"
    return corpus


def load_text(path, splits=(0.9, 0.05, 0.05), sha256=None, symbols="chars"):
    """A character corpus from any UTF-8 text file (status ``custom``): its characters, or
    with ``symbols="bytes"`` its UTF-8 bytes (how models were made before characters).

    ``info["sha256"]`` is the hash of the file's bytes.  Given ``sha256`` (the hash recorded
    when a model was made from the file), a file that hashes differently is an error.  A file
    of one distinct symbol is refused: there would be nothing to predict.
    """
    path = Path(path).expanduser()
    data = read_text_file(path)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise UserError(f"{path} has changed since the model was made from it "
                        f"(sha256 was {sha256[:12]}..., is {digest[:12]}...)")
    corpus = text_corpus(path.stem, data, splits, str(path), symbols=symbols)
    if corpus.vocab_size < 2:
        raise UserError(f"{path}: the text is one character ({corpus.vocab[0]!r}) repeated: there is nothing "
                        "for a model to predict")
    corpus.info["sha256"] = digest
    corpus.status = "custom"
    return corpus


def read_text_file(path, pipe_ok=False):
    """The bytes of a UTF-8 text file, or a one-line UserError saying why it is not one.

    Refused: a missing path or a directory, an unreadable file, and contents that
    :func:`check_text` refuses (empty, binary, not UTF-8).  ``pipe_ok``: a pipe (``/dev/stdin``,
    ``<(command)``) is read too, for text read once (never a training file, read again later).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not (path.is_file() or (pipe_ok and path.is_fifo())):
        raise UserError(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    check_text(data, str(path))
    return data


def check_text(data, where):
    """Raise a one-line UserError unless ``data`` is non-empty UTF-8 text without NUL bytes.

    A NUL byte is valid UTF-8 but never occurs in text: it marks a binary file (an image, an
    archive, UTF-16), which is named as such rather than reported as odd characters.
    """
    if not data:
        raise UserError(f"{where}: empty file")
    nul = data.find(b"\0")
    if nul >= 0:
        raise UserError(f"{where}: a binary file, not text (NUL byte at offset {nul:,})")
    check_utf8(data, where)


def check_utf8(data, where):
    """Raise a one-line UserError unless ``data`` is valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not valid UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                        f"{e.start:,})") from None


def text_corpus(name, data, splits, where, symbols="bytes"):
    """Char corpus of one text: the vocabulary of the whole text's bytes (or, with
    ``symbols="chars"``, its characters), contiguous splits."""
    check_utf8(data, where)
    if not data:
        raise UserError(f"{where}: empty text")
    if symbols == "chars":
        codes = np.frombuffer(data.decode("utf-8").encode("utf-32-le"), dtype="<u4")
        present = np.unique(codes)
        vocab = [chr(c) for c in present]
        ids = np.searchsorted(present, codes).astype(np.int32)
    else:
        codes = np.frombuffer(data, dtype=np.uint8)
        present = np.flatnonzero(np.bincount(codes, minlength=256))
        vocab = [chr(b) for b in present]
        ids = _byte_ids(codes, present)
    train, valid, test = split_stream(ids, splits)
    info = {"splits": list(splits), "symbols": len(ids), "source_path": where}
    return Corpus(name, "char", vocab, train, valid, test, info=info, symbols=symbols)


def _byte_ids(codes, present):
    table = np.full(256, -1, dtype=np.int32)
    table[present] = np.arange(len(present), dtype=np.int32)
    return table[codes]


def split_stream(ids, splits):
    """Cut one stream into contiguous train / valid / test parts by the fractions ``splits``."""
    n = len(ids)
    n_train = int(round(n * splits[0]))
    n_valid = int(round(n * splits[1]))
    return ids[:n_train], ids[n_train:n_train + n_valid], ids[n_train + n_valid:]


def _prepare_char(spec, files):
    (path, entry), = files.values()
    raw = _raw_of(spec)
    data = read_checked(path, entry, raw.member)
    if spec.normalise_newlines:
        data = normalise_newlines(data)
    return text_corpus(spec.name, data, spec.splits, str(path))


def _raw_of(spec):
    return SOURCES[spec.source].files[0]


def _ptb_texts(files):
    texts = {}
    for split in ("train", "valid", "test"):
        path, entry = files[f"ptb.{split}.txt"]
        data = read_checked(path, entry)
        check_utf8(data, str(path))
        texts[split] = data.decode("utf-8")
    return texts


def ptb_char_text(text):
    """PTB word text -> char text: words joined by '_', one '\\n' closing every line."""
    return "".join("_".join(line.split()) + "\n" for line in text.splitlines())


def _prepare_ptb_char(spec, files):
    texts = {k: ptb_char_text(t).encode("utf-8") for k, t in _ptb_texts(files).items()}
    train = np.frombuffer(texts["train"], dtype=np.uint8)
    present = np.flatnonzero(np.bincount(train, minlength=256))
    parts = {}
    for split, data in texts.items():
        ids = _byte_ids(np.frombuffer(data, dtype=np.uint8), present)
        if (ids < 0).any():
            raise UserError(f"ptb_char: the {split} file has characters that train lacks")
        parts[split] = ids
    info = {"splits": "ptb files", "symbols": sum(len(p) for p in parts.values())}
    return Corpus(spec.name, "char", [chr(b) for b in present], parts["train"], parts["valid"],
                  parts["test"], info=info)


def ptb_words(text):
    """Tokens of a PTB word text: each line's words followed by ``<eos>``."""
    return [w for line in text.splitlines() for w in line.split() + [EOS]]


def _prepare_ptb_word(spec, files):
    tokens = {k: ptb_words(t) for k, t in _ptb_texts(files).items()}
    counts = collections.Counter(tokens["train"])
    vocab = sorted(counts, key=lambda w: (-counts[w], w))
    index = {w: i for i, w in enumerate(vocab)}
    parts = {}
    for split, words in tokens.items():
        unknown = {w for w in words if w not in index}
        if unknown:
            raise UserError(f"ptb_word: the {split} file has words that train lacks: "
                            f"{sorted(unknown)[:5]}")
        parts[split] = np.array([index[w] for w in words], dtype=np.int32)
    info = {"splits": "ptb files", "symbols": sum(len(p) for p in parts.values())}
    return Corpus(spec.name, "word", vocab, parts["train"], parts["valid"], parts["test"],
                  info=info)


_PREPARE = {"char": _prepare_char, "ptb_char": _prepare_ptb_char, "ptb_word": _prepare_ptb_word}


def _save_prepared(prep, corpus):
    """Write ``<name>.npz`` then ``<name>.vocab.json``; a read-only cache just skips this."""
    meta = {"format": PREPARED_FORMAT, "name": corpus.name, "level": corpus.level,
            "vocab": corpus.vocab, "vocab_sha256": corpus.vocab_sha256, "info": corpus.info}
    try:
        small = _id_dtype(corpus.vocab_size)
        arrays = {k: getattr(corpus, k).astype(small) for k in ("train", "valid", "test")}
        arrays["origin"] = _origin(corpus.info.get("sources"), corpus.vocab_sha256)
        write_arrays(prep / f"{corpus.name}.npz", arrays)
        with atomic_open(prep / f"{corpus.name}.vocab.json", "w") as f:
            json.dump(meta, f, ensure_ascii=True)
    except OSError:
        pass


def _origin(sources, vocab_sha256):
    """What a prepared npz was made from: the sha256 (32 bytes) of the raw files' sha256 and the
    vocabulary's fingerprint (as JSON, keys sorted)."""
    text = json.dumps({"sources": sources, "vocab_sha256": vocab_sha256}, sort_keys=True)
    return np.frombuffer(hashlib.sha256(text.encode("ascii")).digest(), dtype=np.uint8)


def _id_dtype(n):
    """The smallest unsigned type holding ids 0..n-1 (int32 beyond 16 bits)."""
    return np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.int32


def _load_prepared(prep, spec, sources):
    """The cached corpus if it was made from exactly these raw files, else None."""
    meta_path, npz_path = prep / f"{spec.name}.vocab.json", prep / f"{spec.name}.npz"
    if not (meta_path.is_file() and npz_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not _intact_meta(meta, spec, sources):       # stale or damaged: the ids are not read
            return None
        arrays = read_arrays(npz_path, ["train", "valid", "test", "origin"])
    except (OSError, ValueError):      # DamagedArchive, bad JSON or UTF-8: prepare again
        return None
    origin = arrays.pop("origin")       # ids of other raw files or of another vocabulary: stale
    if origin.dtype != np.uint8 or not np.array_equal(origin, _origin(sources, meta["vocab_sha256"])):
        return None
    parts = [a.astype(np.int32) for a in arrays.values()]
    if any(p.ndim != 1 for p in parts):
        return None
    if any(p.size and (p.min() < 0 or p.max() >= len(meta["vocab"])) for p in parts):
        return None
    return Corpus(spec.name, meta["level"], meta["vocab"], *parts, info=meta["info"])


def _intact_meta(meta, spec, sources):
    """True if a cached corpus's vocab.json is what _save_prepared wrote for these raw files:
    its fields have their types and its vocabulary matches its own fingerprint."""
    if not isinstance(meta, dict) or meta.get("format") != PREPARED_FORMAT:
        return False
    if meta.get("name") != spec.name or meta.get("level") != spec.level:
        return False
    info, vocab = meta.get("info"), meta.get("vocab")
    if not isinstance(info, dict) or info.get("sources") != sources:
        return False
    if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
        return False
    return meta.get("vocab_sha256") == vocab_fingerprint(vocab)


def check_prepared(data_dir, source, manifest):
    """Names of the prepared caches of ``source`` that are damaged or stale: not made from the
    raw files its ``manifest`` records (their sha256).  They are deleted (the next load prepares
    them again from the raw files, which it checks).  The raw files are not hashed here: a
    caller that wants them checked checks them first (``rbtw data list --recheck``)."""
    damaged = []
    sources = {raw: e["sha256"] for raw, e in manifest["files"].items()}
    for name, spec in DATASETS.items():
        if spec.source != source or spec.level not in ("char", "word"):
            continue
        prep = source_dir(data_dir, source) / "prepared"
        paths = [prep / f"{name}.vocab.json", prep / f"{name}.npz"]
        if not any(p.exists() for p in paths):
            continue
        if _load_prepared(prep, spec, sources) is None:
            damaged.append(name)
            for p in paths:
                p.unlink(missing_ok=True)
    return damaged
