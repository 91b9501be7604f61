"""The sandbox: hostile code fails cleanly, the machine is unharmed, other jobs are unaffected."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from evolcoder.benchmarks import harness
from evolcoder.sandbox.child import run_job
from evolcoder.sandbox.isolation import sandbox_uid
from evolcoder.sandbox.jobs import Job, Limits
from evolcoder.sandbox.pool import run_jobs

FAST = Limits(wall_s=5.0, cpu_s=3.0, memory_mb=512, nproc=16, fsize_mb=1)


def _uid_procs(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def test_result_only_after_harness_returns():
    res = run_job(Job(lambda: {"status": "pass"}, (), FAST))
    assert res.status == "ok" and res.result == {"status": "pass"}


def test_os_exit_before_report_is_no_result():
    def bad():
        os._exit(0)

    res = run_job(Job(bad, (), FAST))
    assert res.status == "crash" and res.result is None


def test_infinite_loop_times_out_quickly():
    def spin():
        while True:
            pass

    res = run_job(Job(spin, (), Limits(wall_s=2.0, cpu_s=1.0, memory_mb=512)))
    # stopped by its CPU budget (however long a crowded machine makes that in wall time)
    assert res.status == "timeout" and res.cause == "cpu", res


def test_sleeping_code_hits_the_no_progress_guard():
    t0 = time.monotonic()
    res = run_job(Job(lambda: time.sleep(10**6) or {}, (), Limits(wall_s=1.0, memory_mb=512)))
    assert res.status == "timeout" and res.cause == "stall" and "no progress" in res.detail
    assert time.monotonic() - t0 < 5


def test_code_blocked_on_a_pipe_hits_the_no_progress_guard():
    def block():
        r, _w = os.pipe()
        os.read(r, 1)
        return {}

    res = run_job(Job(block, (), Limits(wall_s=1.0, memory_mb=512)))
    assert res.status == "timeout" and res.cause == "stall"


def test_a_starved_cpu_bound_program_is_not_killed_by_the_wall_clock():
    """2 s of CPU work under a 1 s no-progress guard, with 3 busy processes per core beside it: it
    takes several seconds of wall time, all of them running or waiting for a CPU, and finishes."""
    import subprocess
    import sys

    def work():
        t = time.process_time()
        while time.process_time() - t < 2.0:
            pass
        return {"done": True}

    # each in its own session: under autogroup scheduling a session shares one CPU slot
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(3 * (os.cpu_count() or 1))
    ]
    try:
        t0 = time.monotonic()
        res = run_job(Job(work, (), Limits(wall_s=1.0, cpu_s=6.0, memory_mb=512)))
        wall = time.monotonic() - t0
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert res.status == "ok" and res.result == {"done": True}, res
    assert wall > 2.5  # it really was starved


def test_forks_share_one_cpu_budget():
    def burn():
        import posix

        for _ in range(6):
            if posix.fork() == 0:
                while True:
                    pass
        while True:
            pass

    res = run_job(Job(burn, (), Limits(wall_s=30.0, cpu_s=2.0, memory_mb=512, nproc=16)))
    # the guard summed the CPU time of all 7 processes (each alone stays under its RLIMIT_CPU)
    assert res.status == "timeout" and res.cause == "cpu" and "processes together" in res.detail, res


def test_memory_eater_fails():
    def eat():
        blocks = []
        while True:
            blocks.append(bytearray(64 * 1024 * 1024))

    res = run_job(Job(eat, (), FAST))
    assert res.result is None or "MemoryError" in str(res.result)
    assert res.status in ("crash", "ok") and (res.result is None or "harness_error" not in res.result)


def test_fork_bomb_is_contained_and_cleaned_up():
    def bomb():
        import posix

        n = 0
        for _ in range(10_000):
            try:
                if posix.fork() == 0:
                    time.sleep(30)
                    posix._exit(0)
                n += 1
            except OSError:
                pass
        return {"forked": n}

    res = run_job(Job(bomb, (), Limits(wall_s=5.0, memory_mb=512, nproc=16)))
    if os.geteuid() == 0:
        assert res.status == "ok" and res.result["forked"] < 16
        time.sleep(0.2)
        assert _uid_procs(sandbox_uid()) == []
    else:  # not root: RLIMIT_NPROC relative to this user's processes
        assert res.status in ("ok", "timeout")


def test_escaped_daemon_is_killed():
    if os.geteuid() != 0:
        pytest.skip("per-slot uid cleanup needs root")

    def daemon():
        import posix

        if posix.fork() == 0:
            posix.setsid()
            time.sleep(60)
            posix._exit(0)
        return {"status": "pass"}

    res = run_job(Job(daemon, (), FAST), slot=3)
    assert res.status == "ok"
    time.sleep(0.2)
    assert _uid_procs(sandbox_uid()) == []


def test_cannot_delete_or_overwrite_files(tmp_path):
    canary_dir = tmp_path / "keep"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("precious")
    os.chmod(tmp_path, 0o755)

    def vandal():
        import posix
        import shutil

        def overwrite():
            with open(str(canary), "w") as fh:
                fh.write("gone")

        errors = 0
        for action in (
            lambda: posix.unlink(str(canary)),
            lambda: shutil.rmtree(str(canary_dir)),
            overwrite,
        ):
            try:
                action()
            except OSError:
                errors += 1
        return {"errors": errors}

    res = run_job(Job(vandal, (), FAST))
    assert canary.read_text() == "precious"
    if os.geteuid() == 0:
        assert res.result == {"errors": 3}


def test_big_file_write_is_cut_by_fsize():
    def writer():
        with open("big.bin", "wb") as fh:
            fh.write(b"x" * (8 * 1024 * 1024))
        return {"wrote": True}

    res = run_job(Job(writer, (), FAST))
    assert res.result is None or "harness_error" not in (res.result or {})
    assert res.status != "ok" or res.result.get("wrote") is not True


def test_cannot_kill_the_parent():
    if os.geteuid() != 0:
        pytest.skip("privilege drop needs root")

    def killer():
        import posix
        import signal

        try:
            posix.kill(posix.getppid(), signal.SIGKILL)
        except PermissionError:
            return {"denied": True}
        return {"denied": False}

    res = run_job(Job(killer, (), FAST))
    assert res.result == {"denied": True}


def test_workdir_is_thrown_away():
    res = run_job(Job(lambda: {"cwd": os.getcwd()}, (), FAST))
    cwd = res.result["cwd"]
    assert "evolcoder-sbx-" in cwd and not os.path.exists(cwd)


def test_pool_keeps_order_and_isolates_jobs():
    sem = {"clock": "cpu", "guard": True}
    jobs = [
        Job(harness.run_evalplus, (f"def f(x):\n    return x + {i}\n", "f", "humaneval", [[1]], [1.0], sem), FAST)
        for i in range(6)
    ]
    jobs.insert(
        3,
        Job(
            harness.run_evalplus,
            ("def f(x):\n    while True:\n        pass\n", "f", "humaneval", [[1]], [0.5], sem),
            Limits(wall_s=1.5, cpu_s=1.0, memory_mb=512),
        ),
    )
    res = run_jobs(jobs, workers=2)
    assert [r.status for r in res] == ["ok"] * 7
    assert res[3].result["stop"][0] == "timeout"
    outs = [pickle.loads(r.result["outputs"][0]) for i, r in enumerate(res) if i != 3]
    assert outs == [1 + i for i in range(6)]
