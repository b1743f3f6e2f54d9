"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions and Anthropic Messages wire
formats, answering from a script of replies, so that tests exercise the official SDK clients."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    text: str = ""  # the model's answer
    status: int = 200  # anything else: an error response with this status
    delay: float = 0.0  # seconds to wait before answering
    raw: bytes | None = None  # a body sent as is (malformed JSON)


@dataclass
class FakeApi:
    replies: list[Reply]
    requests: list[dict] = field(default_factory=list)  # {"path", "headers", "body"} of each request

    def __enter__(self) -> FakeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # models.retrieve: the agents' check of key and model
                api.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": None})
                model = self.path.rsplit("/", 1)[-1]
                self._send(200, {"id": model, "object": "model", "type": "model", "created": 0,
                                 "created_at": "2026-01-01T00:00:00Z", "display_name": model, "owned_by": "test"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                api.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
                reply = api.replies.pop(0) if api.replies else Reply(status=500)
                time.sleep(reply.delay)
                if reply.raw is not None:
                    self._send_bytes(200, reply.raw)
                elif reply.status != 200:
                    self._send(reply.status, {"error": {"type": "test_error", "message": f"scripted {reply.status}"},
                                              "type": "error"})
                elif self.path.endswith("/chat/completions"):
                    self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                                     "model": body.get("model"), "choices": [
                                         {"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": reply.text}}],
                                     "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})
                elif self.path.endswith("/messages"):
                    self._send(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                                     "content": [{"type": "text", "text": reply.text}], "stop_reason": "end_turn",
                                     "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": 20}})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict) -> None:
                self._send_bytes(status, json.dumps(payload).encode())

            def _send_bytes(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    if status == 429:
                        self.send_header("retry-after-ms", "10")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["body"] is not None]
