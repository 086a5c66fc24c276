import pytest

from rbtw.fileio import atomic_open


def test_atomic_open_replaces_only_on_success(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert p.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [p]
    with atomic_open(p) as f:
        f.write(b"new")
    assert p.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [p]
