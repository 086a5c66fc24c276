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
