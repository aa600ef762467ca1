"""The studio's limits: how large a request may be (an ASGI middleware answering 413 past it, before
the body is read whole), and how the server's memory budget is shared between its renders and its
previews."""
from __future__ import annotations

from dataclasses import dataclass

from hires.canvas import current_rss_bytes

MIN_JOB_MEMORY = 256 << 20


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    memory: int          # the whole server's budget (--memory), bytes
    max_upload: int      # a request's body at most (--max-upload), bytes

    def job_memory(self) -> int:
        """A render's share: what the budget leaves beside the server as it is now (its own
        process: the page, the queue and, once previews ran, the fast network)."""
        return max(MIN_JOB_MEMORY, self.memory - current_rss_bytes())

    def preview_memory(self) -> int:
        return self.memory


class UploadLimit:
    """Refuse a request whose body is larger than ``limit``: by its Content-Length before reading, or
    when the bytes read pass it (a body sent in chunks); 413 with a one-line JSON error."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge(self._message())
            return message
        await self.app(scope, counted, send)

    def _message(self) -> str:
        return (f"the upload is larger than this server takes ({self.limit / 2**20:.0f} MiB, --max-upload); "
                "send a smaller file")

    async def _refuse(self, scope, receive, send):
        from starlette.responses import JSONResponse
        await JSONResponse({"error": self._message()}, status_code=413)(scope, receive, send)
