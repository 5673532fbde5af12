"""The operators' dashboard, /ops: who may open it, what it shows, and what a real browser draws of it."""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.db import open_database
from mhogo import browser
from mhogo.browser import chart_boxes, screenshot_dashboard, screenshot_problems
from producers.api import charts, dashboard
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.tables import SwitchName, utcnow
from tests.core.test_status import DECISION, NEW, OLD, seed
from tests.utils.processes import free_port, start_mhogo, stop, wait_for

USER, PASSWORD = "operator", os.environ["MHOGO_FLOWER_PASSWORD"]
WIDTH, HEIGHT = 1400, 2400


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


OPERATOR = basic(USER, PASSWORD)
# A chart section of the page: its name and its SVG, base64-encoded in a data URI
CHART = re.compile(r'<section class="chart[^"]*" data-chart="([a-z_]+)"><h2>[^<]+</h2>'
                   r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')  # fmt: skip


@pytest.fixture
def ops_client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, sweep_on_startup=False)) as client:
        yield client


@pytest.fixture
def seeded(services: Services) -> None:
    with Session(services.engine) as session:
        seed(session)


def test_the_dashboard_needs_the_operator_login(ops_client: TestClient, auth: dict[str, str]) -> None:
    assert ops_client.get("/ops").status_code == 401
    assert ops_client.get("/ops").headers["www-authenticate"].startswith("Basic")
    assert ops_client.get("/ops", headers=auth).status_code == 403  # a device token opens nothing here
    assert ops_client.get("/ops", headers=basic(USER, "wrong")).status_code == 401
    assert ops_client.get("/ops", headers=basic("farmer", PASSWORD)).status_code == 401
    assert ops_client.get("/ops", headers=OPERATOR).status_code == 200


@pytest.mark.usefixtures("seeded")
def test_the_page_shows_every_chart_and_the_facts(ops_client: TestClient) -> None:
    response = ops_client.get("/ops", headers=OPERATOR, params={"hours": 2})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<meta http-equiv="refresh" content="30">' in page
    found = CHART.findall(page)
    assert [name for name, _ in found] == list(dashboard.CHARTS)
    for name, data in found:
        svg = base64.b64decode(data).decode()
        assert svg.lstrip().startswith("<?xml"), name
        assert "<svg" in svg, name
        assert "no data yet" not in svg, name
    assert NEW in page
    assert OLD in page
    assert "accuracy_below" in page
    assert "last 2 h" in page
    # every text from the database is escaped: the decision carries <b>, & and < of its own
    assert html.escape(DECISION) in page
    assert DECISION not in page
    assert "<b>holdout</b>" not in page


@pytest.mark.usefixtures("seeded")
def test_the_page_shows_a_paused_switch_and_a_redis_outage(ops_client: TestClient, services: Services) -> None:
    from core import triggers

    with Session(services.engine) as session:
        triggers.set_switch(session, SwitchName.AUTO_PROMOTION, False, "alice <ops>", "labels & photos under review")
    services.settings = services.settings.model_copy(update={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    page = ops_client.get("/ops", headers=OPERATOR).text
    assert '<div class="value">paused</div>' in page
    assert html.escape("by alice <ops>, labels & photos under review") in page
    assert "Redis did not answer" in page
    assert "queue lengths are those of the last tick" in page


def test_an_empty_database_draws_empty_axes(ops_client: TestClient) -> None:
    page = ops_client.get("/ops", headers=OPERATOR).text
    uris = CHART.findall(page)
    assert [name for name, _ in uris] == list(dashboard.CHARTS)
    for name, data in uris:
        assert "no data yet" in base64.b64decode(data).decode(), name
    assert "no retraining run yet" in page


@pytest.mark.parametrize("hours", ["0", "-1", "nine", "10000"])
def test_a_bad_period_is_refused(ops_client: TestClient, hours: str) -> None:
    assert ops_client.get("/ops", headers=OPERATOR, params={"hours": hours}).status_code == 422


def test_a_day_of_one_minute_ticks_renders_a_page_of_bounded_size(services: Services) -> None:
    """Every chart thins a day of points to what it can draw (its speed is not asserted here: timings belong in
    bench/, not in tests)."""
    with Session(services.engine) as session:
        seed(session, minutes=24 * 60)
        page = dashboard.render(session, None, services.settings, 24)
    assert len(page) < 2_000_000


# A real browser ---------------------------------------------------------------------------------------------------


def seeded_database(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = open_database(url)
    with Session(engine) as session:
        seed(session)
    engine.dispose()
    return url


def test_a_browser_draws_the_dashboard(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MHOGO_DATABASE_URL": seeded_database(tmp_path / "ops.db"), "MHOGO_API_PORT": str(port),
           "MHOGO_API_HOST": "127.0.0.1", "MHOGO_HOME": str(tmp_path / "home"), "MHOGO_LOG_JSON": "false"}  # fmt: skip
    api = start_mhogo(["api"], env, tmp_path / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=2), 60, "the API")
        shot = screenshot_dashboard(f"{url}/ops?hours=2", USER, PASSWORD, tmp_path / "dashboard.png", WIDTH, HEIGHT)
    except Exception:
        print((tmp_path / "api.log").read_text()[-3000:])
        raise
    finally:
        stop(api)
    print(f"dashboard screenshot: {shot}")
    boxes = chart_boxes(shot)
    assert [box.name for box in boxes] == list(dashboard.CHARTS)
    assert all(box.loaded and box.width > 300 and box.height > 150 for box in boxes), boxes
    assert screenshot_problems(shot, WIDTH, HEIGHT) == []


def test_the_browser_check_sees_a_blank_page(tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "blank.png"
    Image.new("RGB", (WIDTH, HEIGHT), "white").save(shot)
    shot.with_suffix(".charts.json").write_text(
        '[{"name": "drift", "x": 10, "y": 10, "width": 600, "height": 300, "loaded": true}]'
    )
    problems = screenshot_problems(shot, WIDTH, HEIGHT)
    assert any("blank" in problem for problem in problems)
    assert any("chart drift looks flat" in problem for problem in problems)
    expected = f"{shot} is a PNG of {(WIDTH, HEIGHT)}, expected a PNG of (800, 600)"
    assert screenshot_problems(shot, 800, 600) == [expected]


def test_a_missing_chromium_fails_with_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", Path("/nonexistent/chromium"))
    with pytest.raises(browser.BrowserMissing, match="apt-get install -y chromium chromium-driver"), browser.chromium():
        pass


def test_long_series_are_thinned_to_means_at_the_middle_time() -> None:
    start = utcnow()
    times = [start + timedelta(minutes=i) for i in range(1000)]
    numbers, values = charts.thin(times, [float(i) for i in range(1000)], limit=100)
    assert len(numbers) == len(values) == 100
    assert values[:2] == [4.5, 14.5]  # the means of 0..9 and 10..19
    assert numbers[0] == charts.date_number(times[4])
    assert charts.thin(times[:5], [1.0] * 5, limit=100) == (charts.date_numbers(times[:5]), [1.0] * 5)


def test_an_api_process_loads_neither_torch_nor_matplotlib_until_the_dashboard_is_asked_for() -> None:
    """Every uvicorn worker imports the app; only the one that draws /ops should pay for matplotlib, and none for
    torch (producers never need it)."""
    code = "import sys, producers.api.app; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_dashboard_shows_models_with_their_dataset_versions_and_the_agronomists_agreement(
    ops_client: TestClient, services: Services
) -> None:
    from schemas.tables import DatasetVersion, LabelSource, ModelVersion, PhotoLabel, ReviewItem
    from tests.utils.factories import make_person

    with Session(services.engine) as session:
        session.add(DatasetVersion(id="ds-0123456789abcdef", created_by="test", manifest_key="m", photos=92))
        session.add(ModelVersion(version="lite1+lite2-x", sha256="s", blob_key="b", made_by="retraining run 3",
                                 dataset_version="ds-0123456789abcdef",
                                 metrics={"test_metrics": {"accuracy": 0.8125}}))  # fmt: skip
        amina, baraka = make_person(session, "amina")[0], make_person(session, "baraka")[0]
        for n, (a, b) in enumerate([("cmd", "cmd"), ("cbb", "cbb"), ("healthy", "cmd")], start=1):
            session.add(ReviewItem(id=n, photo_sha256=f"p{n}", blob_key="x", labels_needed=2))
            session.commit()
            for user, said in ((amina, a), (baraka, b)):
                session.add(PhotoLabel(photo_sha256=f"p{n}", item_id=n, label=said, source=LabelSource.AGRONOMIST,
                                       user_id=user.id))  # fmt: skip
        session.commit()
    page = ops_client.get("/ops", headers=OPERATOR).text
    assert "Models and the data that made them" in page
    assert "ds-0123456789abcdef (92 photos)" in page
    assert "0.812 on its own test split" in page
    assert "from 3 photos two agronomists labelled independently (2 agreed)" in page
    assert "<td>amina</td>" in page
