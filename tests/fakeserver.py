"""A tiny OpenAI-compatible chat endpoint with a fixed per-request latency (benchmarks, retry tests).

Plain asyncio HTTP/1.1 with keep-alive, no dependencies. Answers ``POST /v1/chat/completions``
deterministically from the request: an evolve prompt (containing ``#Rewritten Test#``/``Prompt#``) gets
a rewritten instruction, anything else a code answer long enough to pass elimination. ``fail_plan``
scripts failures: a list of (status, retry_after or None) returned to the first requests, in order.

    python tests/fakeserver.py --port 8011 --latency 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
import time


class FakeOpenAIServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        fail_plan: list[tuple[int, float | None]] | None = None,
    ):
        self.host, self.port, self.latency_s = host, port, latency_s
        self.fail_plan = list(fail_plan or [])
        self.requests: list[dict] = []  # every POST body received (including failed ones)
        self.auth_headers: list[str] = []  # Authorization header of each POST
        self.served = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ HTTP

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "POST":
                    self.auth_headers.append(headers.get("authorization", ""))
                status, extra, payload = await self._route(method, path, body, headers)
                raw = isinstance(payload, bytes)  # a file's content
                data = payload if raw else json.dumps(payload).encode()
                head = [
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
                    f"content-type: {'application/octet-stream' if raw else 'application/json'}",
                    f"content-length: {len(data)}",
                ]
                head += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
        if method == "GET" and path.rstrip("/").endswith("/health"):
            return 200, {}, {"status": "ok"}
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {}, {"error": {"message": f"no route {method} {path}"}}
        req = json.loads(body or b"{}")
        self.requests.append(req)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.fail_plan:
                status, retry_after = self.fail_plan.pop(0)
                extra = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
                return status, extra, {"error": {"message": f"scripted failure {status}", "type": "fake"}}
            self.served += 1
            return 200, {}, self.completion(req)
        finally:
            self._in_flight -= 1

    @staticmethod
    def completion(req: dict) -> dict:
        content = req.get("messages", [{}])[-1].get("content", "")
        h = hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:8]
        given = FakeOpenAIServer.given(content)
        if given is not None:
            text = f"{given} Additionally, handle empty inputs and invalid values, and explain complexity ({h})."
        elif "Your Judgement" in content:
            text = "Not Equal"
        else:
            text = (
                "Here is a solution.\n```python\ndef solve(data):\n    if not data:\n        return []\n"
                f"    return sorted(set(data))  # {h}\n```\nIt runs in O(n log n) time and O(n) space."
            )
        return FakeOpenAIServer.envelope(req, h, text, len(content.split()), len(text.split()))

    @staticmethod
    def envelope(req: dict, h: str, text: str, ptoks: int, ctoks: int) -> dict:
        """A chat.completion object answering ``text``."""
        return {
            "id": f"chatcmpl-{h}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }

    @staticmethod
    def given(content: str) -> str | None:
        """The instruction inside an evolving prompt, or None when ``content`` is no evolving prompt."""
        if "#Rewritten Test#" in content or "#Rewritten Prompt#:" in content or "#Created Prompt#:" in content:
            given = content.split("#Given Test#")[-1].split("#The Given Prompt#:")[-1].split("#Given Prompt#:")[-1]
            return given.split("#Rewritten")[0].split("#Created")[0].strip()
        return None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start_in_thread(self) -> FakeOpenAIServer:
        """Serve from a background thread with its own event loop (for tests and benchmarks)."""
        ready = threading.Event()

        def target() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def _close() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    a = ap.parse_args()
    srv = FakeOpenAIServer(a.host, a.port, a.latency)

    async def run() -> None:
        await srv.start()
        print(f"serving {srv.base_url} (latency {a.latency}s)", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
