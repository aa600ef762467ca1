"""The studio's limits: how large a request may be (an ASGI middleware answering 413 past it, before
the body is read whole), and how the server's memory budget is shared between its renders and its
previews."""
from __future__ import annotations

from dataclasses import dataclass

from hires.core.canvas import current_rss_bytes

MIN_JOB_MEMORY = 256 << 20
# what a 1024 px preview adds to the server at its peak, over the server at rest with torch loaded
# (measured: 302 MiB at rest, 510 MiB at the peak of the second preview)
PREVIEW_BYTES = 256 << 20
# of what the budget leaves beside the server, the share a render is planned for: the fast method's
# plans ran under their measured peaks at small budgets (6000x4500, benchmarks/serve.py: planned 0.63
# GiB, peak 0.71 at a 0.70 GiB share; planned 0.53, peak 0.67 at this share of 0.59)
JOB_SHARE = 0.85


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    memory: int          # the whole server's budget (--memory), bytes
    max_upload: int      # a request's body at most (--max-upload), bytes

    def job_memory(self) -> int:
        """A render's share: JOB_SHARE of what the budget leaves beside the server as it is now (its
        own process, warmed at its start: the page, the queue, torch and, once previews ran, the fast
        network)."""
        return max(MIN_JOB_MEMORY, int(JOB_SHARE * (self.memory - current_rss_bytes())))

    def preview_memory(self, rendering: int = 0) -> int:
        """What a preview may use beside a render holding ``rendering`` bytes of the budget; an
        OptionError when that is less than a preview needs (previews wait for the render)."""
        room = self.memory - rendering - current_rss_bytes()
        if room < PREVIEW_BYTES:
            from hires.core.errors import OptionError
            raise OptionError(f"a render holds {rendering / 2**30:.2f} GiB of the server's {self.memory / 2**30:.2f} GiB "
                              "(--memory), which leaves no room for a preview; previews come back when it ends")
        return room


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
