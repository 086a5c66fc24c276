"""Downloads through the real urllib code path against a loopback http.server, and the CLI.

The server serves the shared real copies (``../shared/data`` laid out as ``<source>/<file>``,
which is exactly the mirror layout) and can cut a response off half way or ignore Range.
Never the internet.
"""

import http.server
import os
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from rbtw.cli import main
from rbtw.data import download, load_corpus
from rbtw.data.fetch import import_path
from rbtw.data.listing import dataset_rows
from rbtw.errors import UserError

SHARED = Path(os.environ.get("RBTW_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _needs_shared(monkeypatch):
    if not (SHARED / "ptb").is_dir() or not (SHARED / "warpeace").is_dir():
        pytest.skip(f"real data copies under {SHARED} are absent (set RBTW_SHARED_DATA)")
    monkeypatch.delenv("RBTW_MIRROR", raising=False)
    monkeypatch.delenv("RBTW_DATA", raising=False)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files under ``root``; honours ``Range: bytes=N-`` when ``ranges``; paths in
    ``cut`` are answered once with the full Content-Length but only half the body."""

    root, cut, ranges, log = None, None, True, None

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.log.append((self.path, self.headers.get("Range")))
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        start = int(m.group(1)) if (m and self.ranges) else 0
        if start >= len(data) > 0:
            self.send_error(416)
            return
        self._send(data, start)

    def _send(self, data, start):
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.cut:
            self.cut.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)


@pytest.fixture
def serve():
    """``serve(root, cut=(), ranges=True) -> (base_url, request_log)``; stopped afterwards."""
    servers = []

    def start(root, cut=(), ranges=True):
        log = []
        attrs = dict(root=Path(root), cut=set(cut), ranges=ranges, log=log)
        handler = type("H", (_Handler,), attrs)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _files(d):
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_good_download_is_verified_and_stored(serve, tmp_path):
    url, log = serve(SHARED)
    download("ptb_word", tmp_path, mirror=url)
    assert _files(tmp_path / "ptb") == ["manifest.json", "ptb.test.txt", "ptb.train.txt",
                                        "ptb.valid.txt"]
    assert [p for p, _ in log] == ["/ptb/ptb.train.txt", "/ptb/ptb.valid.txt", "/ptb/ptb.test.txt"]
    assert load_corpus("ptb_word", tmp_path).vocab_size == 10_000
    download("ptb_char", tmp_path, mirror=url)  # same source, already present
    assert len(log) == 3


def test_mirror_from_environment(serve, tmp_path, monkeypatch):
    url, log = serve(SHARED)
    monkeypatch.setenv("RBTW_MIRROR", url + "/")
    download("warpeace", tmp_path)
    assert log == [("/warpeace/warpeace_input.txt", None)]
    assert load_corpus("warpeace", tmp_path).status == "verified"


def test_checksum_mismatch_leaves_nothing_in_the_cache(serve, tmp_path):
    data = bytearray((SHARED / "ptb" / "ptb.train.txt").read_bytes())
    data[12345] ^= 0x20
    (tmp_path / "srv" / "ptb").mkdir(parents=True)
    (tmp_path / "srv" / "ptb" / "ptb.train.txt").write_bytes(bytes(data))
    url, _ = serve(tmp_path / "srv")
    with pytest.raises(UserError, match="ptb.train.txt: checksum mismatch"):
        download("ptb_char", tmp_path / "cache", mirror=url)
    assert _files(tmp_path / "cache" / "ptb") == []


def test_cut_off_transfer_is_resumed_with_range(serve, tmp_path):
    url, log = serve(SHARED, cut={"/ptb/ptb.valid.txt"})
    cut = r"cut off after 199,891 of 399,782 bytes.*run the command again"
    with pytest.raises(UserError, match=cut):
        download("ptb_word", tmp_path, mirror=url)
    assert _files(tmp_path / "ptb") == ["ptb.train.txt", "ptb.valid.txt.part"]
    assert (tmp_path / "ptb" / "ptb.valid.txt.part").stat().st_size == 199_891
    assert {r["name"]: r["status"] for r in dataset_rows(tmp_path)}["ptb_word"] == "incomplete"
    with pytest.raises(UserError, match="incomplete"):
        load_corpus("ptb_word", tmp_path)
    download("ptb_word", tmp_path, mirror=url)
    assert ("/ptb/ptb.valid.txt", "bytes=199891-") in log
    assert [p for p, _ in log].count("/ptb/ptb.train.txt") == 1  # kept from the first run
    assert load_corpus("ptb_word", tmp_path).status == "verified"
    assert "ptb.valid.txt.part" not in _files(tmp_path / "ptb")


def test_cut_off_transfer_restarts_when_the_server_ignores_range(serve, tmp_path):
    url, log = serve(SHARED, cut={"/warpeace/warpeace_input.txt"}, ranges=False)
    with pytest.raises(UserError, match="cut off"):
        download("warpeace", tmp_path, mirror=url)
    assert _files(tmp_path / "warpeace") == ["warpeace_input.txt.part"]
    download("warpeace", tmp_path, mirror=url)
    assert log[-1] == ("/warpeace/warpeace_input.txt", "bytes=1598114-")  # asked, got 200
    stored = tmp_path / "warpeace" / "warpeace_input.txt"
    assert stored.read_bytes() == (SHARED / "warpeace" / "warpeace_input.txt").read_bytes()


def test_a_stale_partial_file_that_fails_its_check_is_fetched_afresh(serve, tmp_path):
    url, log = serve(SHARED)
    (tmp_path / "warpeace").mkdir()
    (tmp_path / "warpeace" / "warpeace_input.txt.part").write_bytes(b"x" * 1000)
    download("warpeace", tmp_path, mirror=url)
    assert log == [("/warpeace/warpeace_input.txt", "bytes=1000-"),
                   ("/warpeace/warpeace_input.txt", None)]
    assert _files(tmp_path / "warpeace") == ["manifest.json", "warpeace_input.txt"]


def test_http_errors_are_one_line_user_errors(serve, tmp_path):
    url, _ = serve(tmp_path / "empty")
    with pytest.raises(UserError, match=r"HTTP 404"):
        download("linux", tmp_path, mirror=url)
    with pytest.raises(UserError, match="cannot download http://127.0.0.1:1/linux/linux_input.txt"):
        download("linux", tmp_path, mirror="http://127.0.0.1:1")
    assert not (tmp_path / "linux").exists()             # a failed command leaves no trace


def test_a_failed_download_or_import_leaves_no_new_directory_and_keeps_an_old_one(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(UserError):
        download("linux", cache, mirror="http://127.0.0.1:1")
    with pytest.raises(UserError):
        import_path("linux", tmp_path / "garbage.txt", cache)          # no such file
    (tmp_path / "garbage.txt").write_text("not the Linux corpus")
    with pytest.raises(UserError):
        import_path("linux", tmp_path / "garbage.txt", cache)          # fails its check
    assert not cache.exists() or list(cache.iterdir()) == []
    (cache / "linux").mkdir(parents=True)
    (cache / "linux" / "notes.txt").write_text("mine")
    with pytest.raises(UserError):
        download("linux", cache, mirror="http://127.0.0.1:1")
    assert (cache / "linux" / "notes.txt").read_text() == "mine"


def test_a_failed_download_into_a_new_data_directory_leaves_nothing(serve, tmp_path):
    url, _ = serve(tmp_path / "empty")
    for mirror in ("http://127.0.0.1:1", url):                       # unreachable, HTTP 404
        with pytest.raises(UserError):
            download("linux", tmp_path / "new" / "cache", mirror=mirror)
        assert not (tmp_path / "new").exists()


def test_a_downloaded_file_changed_in_place_is_refused_and_listed_as_damaged(serve, tmp_path):
    url, _ = serve(SHARED)
    download("warpeace", tmp_path, mirror=url)
    stored = tmp_path / "warpeace" / "warpeace_input.txt"
    with open(stored, "r+b") as f:                                   # one byte, size kept
        f.seek(123_456)
        byte = f.read(1)
        f.seek(123_456)
        f.write(bytes([byte[0] ^ 0x04]))
    with pytest.raises(UserError, match=rf"^{re.escape(str(stored))}: checksum mismatch .*"
                                        r"rbtw data import warpeace PATH` again$"):
        load_corpus("warpeace", tmp_path)
    listing = _run("list", "--data-dir", str(tmp_path)).output
    assert re.search(r"^warpeace +damaged ", listing, re.M), listing
    assert f"{stored}: checksum mismatch" in listing


# --- CLI -------------------------------------------------------------------------------------

def _run(*args, env=None):
    return CliRunner().invoke(main, ["data", *args], env=env)


def test_cli_list(tmp_path):
    r = _run("list", "--data-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert f"data directory: {tmp_path}" in r.output
    assert re.search(r"^default +embedded +.*carroll-alice\.txt$", r.output, re.M)
    assert re.search(rf"^ptb_char +missing +{re.escape(str(tmp_path / 'ptb'))}$", r.output, re.M)
    assert "no published checksum" in r.output  # linux / warpeace explain their check


def test_cli_data_dir_option_beats_environment(tmp_path):
    env = {"RBTW_DATA": str(tmp_path / "env")}
    assert f"data directory: {tmp_path / 'env'}" in _run("list", env=env).output
    r = _run("list", "--data-dir", str(tmp_path / "opt"), env=env)
    assert f"data directory: {tmp_path / 'opt'}" in r.output
    r = CliRunner().invoke(main, ["data", "--data-dir", str(tmp_path / "grp"), "list"], env=env)
    assert f"data directory: {tmp_path / 'grp'}" in r.output


def test_cli_download_and_import(serve, tmp_path):
    url, _ = serve(SHARED)
    r = _run("download", "warpeace", "--mirror", url, "--data-dir", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    assert "warpeace_input.txt: verified" in r.output and "ready in" in r.output
    r = _run("import", "ptb_char", str(SHARED / "ptb"), "--data-dir", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    listing = _run("list", "--data-dir", str(tmp_path / "a")).output
    assert re.search(r"^ptb_word +verified", listing, re.M)
    assert re.search(r"^warpeace +verified", listing, re.M)


@pytest.mark.parametrize("args, message", [
    (("download", "nope"), "error: unknown data set 'nope' (choose from: default, ptb_char"),
    (("download", "default"), "error: data set 'default' is embedded in the repository"),
    (("import", "ptb_word", "/no/such/dir"), "error: /no/such/dir: no such file or directory"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    r = _run(*args, "--data-dir", str(tmp_path))
    assert r.exit_code == 2
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1


def test_cli_corrupt_download_is_one_line(serve, tmp_path):
    (tmp_path / "srv" / "linux").mkdir(parents=True)
    (tmp_path / "srv" / "linux" / "linux_input.txt").write_bytes(b"int main;\n")
    url, _ = serve(tmp_path / "srv")
    r = _run("download", "linux", "--mirror", url, "--data-dir", str(tmp_path / "c"))
    assert r.exit_code == 2
    assert r.stderr == "error: linux_input.txt: unexpected size 10 bytes (expected 6,206,996)\n"
    assert _files(tmp_path / "c" / "linux") == []
