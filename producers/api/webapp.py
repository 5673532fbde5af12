"""The farmer's app as the API serves it at /app/: the files `make app` builds into MHOGO_APP_DIR (app/dist).

- index.html and the service worker are revalidated on every load (no-cache), so a new release reaches phones at
  their next visit; the service worker may control all of /app/.
- assets/ holds files whose names carry a hash of their content: cached for a year, never asked again.
- everything else (translations, icons, the manifest, ONNX Runtime's WebAssembly) is revalidated, by ETag.
- a path the app routes itself (/app/history) is index.html; a missing file (a name with an extension) is 404.
- every answer carries a Content-Security-Policy that allows nothing but this origin (and WebAssembly, and photos
  as blob: and data: images), nosniff and no referrer.
- with no index.html (Node was not there when mhogo was installed), 503 and how to build it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from anyio import to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Message, Receive, Scope, Send

from producers.api import problems

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "worker-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
# Python's mimetypes lacks some of these (or says otherwise on some systems): the app's files say exactly this.
MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain",
}
NOT_BUILT = (
    "The farmer's app was not built on this server, so there is nothing to show here yet.\n\n"
    "To build it: install Node 20 (or newer) with npm, then run `make app` in mhogo's folder (`make up` does it too "
    "when Node is there), and reload this page. The built files go to app/dist, or to MHOGO_APP_DIR when that is set.\n"
)


def cache_headers(name: str) -> dict[str, str]:
    if name == "sw.js":
        return {"Cache-Control": REVALIDATE, "Service-Worker-Allowed": "/app/"}
    if name.startswith("assets/"):
        return {"Cache-Control": IMMUTABLE}
    return {"Cache-Control": REVALIDATE}


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


class FarmerApp(StaticFiles):
    """Mounted at /app. The folder may appear, or change, while the API runs (`make app`): looked up per request."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)

    async def check_config(self) -> None:
        """Nothing to check at the first request: a folder not built yet is answered 503, not refused at start."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await super().__call__(scope, receive, secured)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            return problems.problem(405, "The farmer's app is only read (GET).", {"Allow": "GET, HEAD"})
        index = await self.find("index.html")
        if index is None:
            return PlainTextResponse(NOT_BUILT, status_code=503)
        name = PurePosixPath(path).as_posix()
        if name not in (".", "index.html"):
            found = await self.find(name)
            if found is not None:
                return self.serve(name, found, scope)
            if "." in PurePosixPath(name).name or name.startswith("assets/"):
                return problems.problem(404, "No such file in the farmer's app.")
        return self.serve("index.html", index, scope)  # the app routes a path of its own (/app/history) itself

    async def find(self, name: str) -> tuple[str, os.stat_result] | None:
        try:
            full_path, found = await to_thread.run_sync(self.lookup_path, name)
        except (OSError, ValueError):  # a name too long, a NUL byte, no permission: no file of the app
            return None
        return (full_path, found) if found is not None and stat.S_ISREG(found.st_mode) else None

    def serve(self, name: str, found: tuple[str, os.stat_result], scope: Scope) -> Response:
        full_path, stat_result = found
        response = FileResponse(full_path, stat_result=stat_result, media_type=media_type(name),
                                headers=cache_headers(name))  # fmt: skip
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response
