"""The farmer's app at /app/, from a built folder (a small fake one here: the tests build nothing): cache policy per
kind of file, media types, security headers, the app's own routes answered with index.html, and 503 when the app
was never built."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from producers.api.app import create_app
from producers.api.deps import Services

IMMUTABLE = "public, max-age=31536000, immutable"
FILES = {
    "index.html": b"<!doctype html><title>mhogo</title><script type=module src=assets/app-3f2a9c1e.js></script>",
    "sw.js": b"self.addEventListener('fetch', () => {});",
    "assets/app-3f2a9c1e.js": b"console.log('app');",
    "assets/app-77aa01bc.css": b"body{margin:0}",
    "i18n/sw.json": b'{"app.take_photo": "Piga picha ya jani"}',
    "manifest.webmanifest": b'{"name": "mhogo", "start_url": "/app/"}',
    "icons/icon-192.png": b"\x89PNG\r\n\x1a\n",
    "ort/ort-wasm-simd-threaded.wasm": b"\x00asm\x01\x00\x00\x00",
    "ort/ort-wasm-simd-threaded.mjs": b"export default {};",
}


def with_app_dir(services: Services, folder: Path) -> TestClient:
    config = Settings(HOME=services.settings.HOME, APP_DIR=folder, PUBLIC_URL="https://mhogo.example")
    return TestClient(create_app(dataclasses.replace(services, settings=config), sweep_on_startup=False),
                      follow_redirects=False)  # fmt: skip


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    for name, data in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def app_client(services: Services, dist: Path) -> Iterator[TestClient]:
    with with_app_dir(services, dist) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "media_type", "cache"),
    [
        ("/app/", "text/html", "no-cache"),
        ("/app/index.html", "text/html", "no-cache"),
        ("/app/sw.js", "text/javascript", "no-cache"),
        ("/app/assets/app-3f2a9c1e.js", "text/javascript", IMMUTABLE),
        ("/app/assets/app-77aa01bc.css", "text/css", IMMUTABLE),
        ("/app/i18n/sw.json", "application/json", "no-cache"),
        ("/app/manifest.webmanifest", "application/manifest+json", "no-cache"),
        ("/app/icons/icon-192.png", "image/png", "no-cache"),
        ("/app/ort/ort-wasm-simd-threaded.wasm", "application/wasm", "no-cache"),
        ("/app/ort/ort-wasm-simd-threaded.mjs", "text/javascript", "no-cache"),
    ],
)
def test_each_file_with_its_type_and_cache_policy(app_client: TestClient, path: str, media_type: str,
                                                  cache: str) -> None:  # fmt: skip
    answer = app_client.get(path)
    assert answer.status_code == 200
    name = path.removeprefix("/app/") or "index.html"
    assert answer.content == FILES[name]
    assert answer.headers["content-type"].split(";")[0] == media_type
    assert answer.headers["cache-control"] == cache
    assert answer.headers["etag"]
    again = app_client.get(path, headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304  # revalidated without the bytes
    assert again.headers["cache-control"] == cache


def test_the_service_worker_may_control_the_whole_app(app_client: TestClient) -> None:
    assert app_client.get("/app/sw.js").headers["service-worker-allowed"] == "/app/"


@pytest.mark.parametrize("path", ["/app/", "/app/sw.js", "/app/assets/app-3f2a9c1e.js", "/app/history",
                                  "/app/missing.js"])  # fmt: skip
def test_every_answer_carries_the_security_headers(app_client: TestClient, path: str) -> None:
    headers = app_client.get(path).headers
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert policy["img-src"] == "'self' blob: data:"
    assert policy["worker-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_the_apps_own_routes_are_index_html_and_missing_files_are_404(app_client: TestClient) -> None:
    for path in ("/app/history", "/app/photo/3f2a", "/app/settings/language"):
        answer = app_client.get(path)
        assert (answer.status_code, answer.content) == (200, FILES["index.html"]), path
        assert answer.headers["cache-control"] == "no-cache"
    for path in ("/app/missing.js", "/app/assets/app-00000000.js", "/app/assets/gone", "/app/i18n/xx.json"):
        answer = app_client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json"


def test_nothing_outside_the_folder_is_served(app_client: TestClient, dist: Path) -> None:
    (dist.parent / "secret.txt").write_text("not for phones")
    for path in ("/app/../secret.txt", "/app/%2e%2e/secret.txt", "/app/..%2fsecret.txt"):
        answer = app_client.get(path)
        assert b"not for phones" not in answer.content, path


def test_the_server_root_and_app_without_slash_lead_to_the_app(app_client: TestClient) -> None:
    root = app_client.get("/")
    assert (root.status_code, root.headers["location"]) == (303, "/app/")
    bare = app_client.get("/app")
    assert bare.status_code in (301, 307, 308)
    assert bare.headers["location"].endswith("/app/")


def test_the_app_is_only_read(app_client: TestClient) -> None:
    assert app_client.post("/app/index.html", content=b"x").status_code == 405


def test_an_app_never_built_says_how_to_build_it(services: Services, tmp_path: Path) -> None:
    empty = tmp_path / "no-dist"  # not even the folder: Node was not there at install
    with with_app_dir(services, empty) as client:
        answers = [client.get(path) for path in ("/app/", "/app/history", "/app/sw.js")]
        empty.mkdir()
        (empty / "sw.js").write_bytes(b"//")  # a half-built folder without its index.html is not an app either
        half = client.get("/app/sw.js")
        (empty / "index.html").write_bytes(b"<!doctype html>")  # `make app` while the API runs: served at once
        built = client.get("/app/")
    for answer in [*answers, half]:
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("text/plain")
        assert "make app" in answer.text
        assert "Node 20" in answer.text
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert (built.status_code, built.content) == (200, b"<!doctype html>")


def test_the_default_folder_is_app_dist_of_the_repository() -> None:
    import core.config

    assert Settings().app_dir == Path(core.config.__file__).resolve().parent.parent / "app" / "dist"
