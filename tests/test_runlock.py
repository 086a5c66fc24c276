"""The run-directory lock: exclusive while held, free again after any exit of its holder."""

import subprocess
import sys
import time

import pytest

from rbtw.runlock import RunBusy, RunLock


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunBusy, match="in use by pid"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on exit: free again
        pass


def test_lock_of_a_killed_process_is_not_stale(tmp_path):
    code = ("import sys, time; from rbtw.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    while True:
        try:
            RunLock(tmp_path).acquire().release()
            break
        except RunBusy:
            assert time.time() < deadline, "the lock outlived its killed holder"
            time.sleep(0.05)


def test_a_directory_made_by_the_lock_and_left_empty_is_removed(tmp_path):
    with RunLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert (tmp_path / "kept" / "config.json").exists()
    (tmp_path / "old").mkdir()
    with RunLock(tmp_path / "old"):
        pass
    assert (tmp_path / "old").is_dir()
    assert list((tmp_path / "old").iterdir()) == [] and list((tmp_path / "kept").iterdir()) != []


def test_releasing_leaves_no_lock_file_behind(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith("pid ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


_CONTENDER = """
import os, sys, time
from rbtw.runlock import RunBusy, RunLock
run_dir, inside, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = 0
while held < rounds:
    try:
        lock = RunLock(run_dir).acquire()
    except RunBusy:
        continue
    fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)   # fails if another holder is inside
    os.close(fd)
    time.sleep(0.0005)
    os.unlink(inside)
    lock.release()
    held += 1
print("ok", held)
"""


def test_two_processes_never_hold_the_lock_at_once_while_it_is_removed_and_remade(tmp_path):
    """Each release removes the file and each acquire may recreate it: the check after locking
    must still keep the holders apart (a second holder would fail to create the marker)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(run_dir), str(tmp_path / "inside"), "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.split() == ["ok", "300"], err
    assert list(run_dir.iterdir()) == []
