"""Streamed sampling: pieces of text that join to what ``Model.sample`` returns, ``rbtw sample``
writing them as they come, keeping them on Ctrl-C (status 130) and ending quietly when the
reader closes the pipe (status 0)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rbtw
from randmodel import random_export
from rbtw.api import decode
from rbtw.export_format import write_export
from rbtw.generate import utf8_pieces

ROOT = Path(__file__).resolve().parents[1]
BYTES = [0x41, 0x20, 0x61, 0x0A, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xFF, 0xED, 0xA0, 0xF4, 0x90, 0xE0]
VOCAB = [chr(b) for b in BYTES]   # a byte vocabulary: ASCII, parts of é € 😀, bytes invalid or
                                  # invalid after some leads (surrogates ED A0, past U+10FFFF F4 90)


def write_model(path, kind="char", vocab=VOCAB, hidden=32):
    ex = random_export(np.random.default_rng(0), hidden=hidden, n_in=len(vocab), kind=kind, t_max=5)
    ex.manifest["vocab"] = list(vocab)
    write_export(path, ex)
    return path


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, len(VOCAB) - 1), max_size=40), cuts=st.lists(st.integers(0, 40), max_size=8))
def test_pieces_join_to_the_decoded_text_wherever_the_runs_are_cut(ids, cuts):
    bounds = sorted({0, len(ids), *(c for c in cuts if c <= len(ids))})
    runs = [ids[a:b] for a, b in zip(bounds, bounds[1:])]
    def dec(x):
        return decode(x, VOCAB, "char")
    assert "".join(utf8_pieces(dec, runs)) == dec(ids)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_sample_stream_joins_to_sample(tmp_path, kind):
    vocab = VOCAB if kind == "char" else [f"w{k}" for k in range(12)]
    model = rbtw.load(write_model(tmp_path / "m.rbtw", kind, vocab))
    prime = "A \u00e9" if kind == "char" else "w1 w2"
    for length, temperature in ((0, 1.0), (1, 1.0), (300, 1.0), (40, 0.0)):
        pieces = list(model.sample_stream(prime, length=length, temperature=temperature, seed=3))
        assert "".join(pieces) == model.sample(prime, length=length, temperature=temperature, seed=3)
        assert length < 100 or len(pieces) > 2                        # streamed in runs


def run_sample(model, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = "from rbtw.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "sample", str(model), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_closed_pipe_ends_sampling_quietly(tmp_path):
    model = write_model(tmp_path / "m.rbtw", vocab=list("abcdefghij \n.,"))
    p = run_sample(model, "--length", "100000000", "--prime", "abc")
    head = p.stdout.read(10)                                           # like `| head -c 10`
    p.stdout.close()
    _, err = p.communicate(timeout=600)
    assert head.startswith(b"abc") and len(head) == 10
    assert p.returncode == 0, err.decode()
    assert err == b""


def test_ctrl_c_keeps_what_was_generated(tmp_path):
    model = write_model(tmp_path / "m.rbtw", vocab=list("abcdefghij \n.,"))
    p = run_sample(model, "--length", "100000000", "--prime", "abc")
    first = p.stdout.read(2000)                                        # generation under way
    p.send_signal(signal.SIGINT)
    rest, err = p.communicate(timeout=600)
    out = first + rest
    assert p.returncode == 130, err.decode()
    assert out.startswith(b"abc") and len(out) > 2000 and out.endswith(b"\n")
    assert b"interrupted" in err and b"Traceback" not in err
