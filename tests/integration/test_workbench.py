"""The agronomists' workbench (/review) in a real headless Chromium at a tablet's size, against a real stack (API,
worker, Redis, database), every item needing two labels (MHOGO_REVIEW_DOUBLE_SHARE=1).

The story: a phone sends five sample photos, the worker classifies them, a farmer disputes one answer, the queue is
refreshed. Agronomist A logs in through the login page and labels the five with the keyboard only (agreeing with the
model on all but one): the model's answer on a photo appears only once A has answered it, each next photo was loaded
before it was shown; A undoes one label (z) and gives another. Agronomist B labels the same five on the touch screen,
disagreeing with A on the disputed one, which goes to agronomist C (tablet held upright) to decide. Then the agreement
(Cohen's kappa) an operator reads matches the labels given. The screenshot of A mid-queue goes to
MHOGO_SCREENSHOT_DIR when set (docs/screens/workbench.png in the README is made so), else beside the test's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from sklearn.metrics import cohen_kappa_score
from sqlmodel import Session, col, select

from core.users import find_user, issue_token
from mhogo.browser import chromium, colours
from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import Feedback, Job, PhotoLabel, ReviewItem, ReviewStatus, User
from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import make_person, sample_photo
from tests.utils.processes import wait_for

pytestmark = pytest.mark.integration

APP_DIST = Path(__file__).resolve().parents[2] / "app" / "dist"
TABLET = (1024, 768)  # a 10" tablet held landscape, in CSS pixels
UPRIGHT = (768, 1024)  # the same tablet held upright
PHOTOS = [sample_photo(kind, 0) for kind in ("cbb", "cbsd", "cgm", "cmd", "healthy")]
# Every photo in the queue (each confident answer audited, the others unsure), each needing two labels.
REVIEW_ENV = {"MHOGO_REVIEW_DOUBLE_SHARE": "1", "MHOGO_REVIEW_AUDIT_SHARE": "1"}
KEY = {"cbb": "1", "cbsd": "2", "cgm": "3", "cmd": "4", "healthy": "5", "not_cassava": "n", "unusable": "u"}
A, B, C = "amina", "baraka", "chiku"

# The item on screen (0 when nothing is left), or null while the page is still drawing.
SHOWN_JS = """
const photo = document.getElementById('photo');
if (photo) return Number(photo.dataset.item);
return document.getElementById('empty') ? 0 : null;
"""
PHOTOS_FETCHED_JS = """
return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
  .filter(p => /^\\/v1\\/review\\/\\d+\\/photo$/.test(p));
"""

# The last answer panel: which item it is about, the model's label on it, and its bars (label -> probability).
LAST_ANSWER_JS = """
const last = document.querySelector('[data-testid=last-answer]');
const model = last && last.querySelector('[data-testid=model-said]');
return {item: last && last.dataset.item ? Number(last.dataset.item) : null, model: model ? model.dataset.label : null,
        bars: Object.fromEntries(Array.from(last ? last.querySelectorAll('.bar-row') : [])
          .map(row => [row.dataset.label, Number(row.dataset.p)]))};
"""
ZOOM_JS = """
const photo = document.getElementById('photo');
photo.parentElement.dispatchEvent(new WheelEvent('wheel', {deltaY: -300, clientX: 300, clientY: 380, bubbles: true,
                                                            cancelable: true}));
"""
SCALE_JS = "return new DOMMatrix(getComputedStyle(document.getElementById('photo')).transform).a"


@dataclass
class Queue:
    """The stack, what the model said of each item's photo, and the item a farmer disputed with the farmer's label."""

    stack: LiveStack
    shots: Path
    model: dict[int, dict[str, Any]]  # item id -> {"label", "probabilities"}
    disputed: int
    farmer_said: str


def upload_and_dispute(stack: LiveStack) -> tuple[str, str]:
    """Five photos classified by the worker; a farmer disagrees with the first answer. (job id, farmer's label)."""
    with stack.client(stack.new_token("field phone")) as client:
        job_ids = []
        for n, path in enumerate(PHOTOS):
            headers = {"Idempotency-Key": f"workbench-photo-{n}", "Content-Type": "image/jpeg"}
            response = client.post("/v1/photos", content=path.read_bytes(), headers=headers)
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["job_id"])

        def finished() -> list[dict[str, Any]] | None:
            bodies = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
            return bodies if all(body["status"] in TERMINAL_STATUSES for body in bodies) else None

        bodies = wait_for(finished, 120, "the worker to classify the five photos")
        assert isinstance(bodies, list)
        job = next(body for body in bodies if body["status"] == "classified")
        farmer_said = "cgm" if job["result"]["label"] != "cgm" else "cmd"
        response = client.post(f"/v1/jobs/{job['job_id']}/feedback", json={"label": farmer_said})
        assert response.status_code == 202, response.text
    return job["job_id"], farmer_said


@pytest.fixture(scope="module")
def queue(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queue]:
    if not (APP_DIST / "review.html").is_file():
        pytest.fail(f"{APP_DIST} has no built workbench: run `make app` (Node 20 and npm) before the browser tests")
    home = tmp_path_factory.mktemp("workbench-stack")
    shots = Path(os.environ.get("MHOGO_SCREENSHOT_DIR") or home / "screens")
    with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", redis_url, REVIEW_ENV) as stack:
        disputed_job, farmer_said = upload_and_dispute(stack)
        with Session(stack.engine) as session:
            wait_for(lambda: session.exec(select(Feedback).where(col(Feedback.job_id) == disputed_job)).first(), 30,
                     "the farmer's feedback to be stored")  # fmt: skip
            for name in (A, B, C):
                make_person(session, name)
            make_person(session, "olu", "operator")
        mhogo_cli(stack, "review", "refresh")
        with Session(stack.engine) as session:
            items = session.exec(select(ReviewItem)).all()
            assert len(items) == len(PHOTOS), [item.reasons for item in items]
            assert all(item.labels_needed == 2 for item in items)
            model = {item.id or 0: model_of(session.get(Job, item.job_id)) for item in items}
            [disputed] = [item.id or 0 for item in items if item.job_id == disputed_job]
            assert "farmer_disagreed" in {reason["code"] for item in items if item.id == disputed
                                          for reason in item.reasons}  # fmt: skip
        yield Queue(stack, shots, model, disputed, farmer_said)


def model_of(job: Job | None) -> dict[str, Any]:
    assert job is not None
    label = job.label if job.status == "classified" else "not_cassava"
    return {"label": label, "probabilities": job.probabilities or {}}


def mhogo_cli(stack: LiveStack, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mhogo", *args], env=stack.env, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    return done.stdout


def log_in(driver: WebDriver, origin: str, name: str) -> int:
    """Open /review, be sent to the login page, log in (typing, then Enter) and come back: the item shown."""
    driver.get(f"{origin}/review")
    login = urlparse(driver.current_url)
    assert (login.path, parse_qs(login.query)) == ("/login", {"next": ["/review"]})
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(f"password of {name}", Keys.ENTER)
    wait_for(lambda: urlparse(driver.current_url).path == "/review", 20, f"{name} back on /review")
    return shown(driver)


def shown(driver: WebDriver, other_than: int | None = None) -> int:
    """The item on screen once the page has drawn it (0: nothing left), waiting for one other than `other_than`."""

    def drawn() -> int | None:
        item = driver.execute_script(SHOWN_JS)
        return None if item is None or item == other_than else item + 1  # +1: 0 is an answer, not "not yet"

    found = wait_for(drawn, 20, f"the workbench to show an item other than {other_than}")
    assert isinstance(found, int)
    return found - 1


def press(driver: WebDriver, key: str, item: int) -> int:
    """Press one key (no mouse) on `item` and wait for the page to move on: the item shown next."""
    ActionChains(driver).send_keys(key).perform()
    return shown(driver, other_than=item)


def tap(driver: WebDriver, key: str, item: int) -> int:
    """Tap the answer's button (as on a tablet) on `item` and wait for the page to move on: the item shown next."""
    driver.find_element(By.CSS_SELECTOR, f'button.answer[data-key="{key}"]').click()
    return shown(driver, other_than=item)


def last_answer(driver: WebDriver) -> dict[str, Any]:
    return dict(driver.execute_script(LAST_ANSWER_JS))


def buttons_out_of_sight(driver: WebDriver) -> list[str]:
    """The answer buttons not wholly inside the viewport, or too small for a finger (under 44 CSS px high)."""
    return list(
        driver.execute_script("""
return Array.from(document.querySelectorAll('button.answer')).filter(b => {
  const r = b.getBoundingClientRect();
  return r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth || r.height < 44;
}).map(b => b.textContent);""")
    )


def zooms(driver: WebDriver) -> None:
    """A turn of the mouse wheel over the photo zooms it in (pinch on a tablet is the same panzoom); then reset."""
    driver.execute_script(ZOOM_JS)
    zoomed = wait_for(lambda: float(driver.execute_script(SCALE_JS)) > 1.05, 5, "the photo to zoom in")
    driver.execute_script("document.getElementById('photo').dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))")
    assert zoomed


def counts_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "counts").text)


def label_and_check(driver: WebDriver, queue: Queue, item: int, label: str, by: Callable[..., int] = press) -> int:
    """Answer `item` by its key (or by tapping its button), checking the model's answer on it is hidden before and
    shown after, and that the next item's photo was loaded before it was shown."""
    assert last_answer(driver)["item"] != item  # no anchoring: nothing of the model's on this photo yet ...
    why = driver.find_element(By.CSS_SELECTOR, ".reasons").text.lower()
    assert queue.model[item]["label"].replace("_", " ") not in why  # ... not even in why it is in the queue
    fetched = set(driver.execute_script(PHOTOS_FETCHED_JS))
    after = by(driver, KEY[label], item)
    said = last_answer(driver)
    expected = queue.model[item]
    assert (said["item"], said["model"]) == (item, expected["label"])
    assert said["bars"] == pytest.approx(expected["probabilities"])
    if after:
        assert f"/v1/review/{after}/photo" in fetched  # prefetched while `item` was on screen
    return after


def live_labels(stack: LiveStack) -> dict[tuple[int, str], str]:
    """(item, agronomist) -> label, of the labels not retracted."""
    with Session(stack.engine) as session:
        rows = session.exec(
            select(PhotoLabel, User)
            .join(User, col(User.id) == col(PhotoLabel.user_id))
            .where(col(PhotoLabel.item_id).is_not(None), col(PhotoLabel.retracted_at).is_(None))
        ).all()
    return {(label.item_id or 0, user.name): label.label for label, user in rows}


def test_three_agronomists_work_the_queue_and_their_agreement_is_computed(queue: Queue) -> None:
    stack, origin = queue.stack, queue.stack.api_url
    planned = {item: answer["label"] for item, answer in queue.model.items()}  # A agrees with the model ...
    with chromium(*TABLET) as driver:
        item = log_in(driver, origin, A)
        assert item == queue.disputed  # the farmer's dispute first
        assert counts_text(driver).startswith(f"{len(PHOTOS)} left for you")
        zooms(driver)
        seen = [item]
        item = label_and_check(driver, queue, item, planned[item])
        seen.append(item)
        item = label_and_check(driver, queue, item, planned[item])
        seen.append(item)
        slip = item
        item = press(driver, KEY["unusable"], slip)  # a slip of the finger on the third photo ...
        assert live_labels(stack)[(slip, A)] == "unusable"
        assert press(driver, "z", item) == slip  # ... undone: the photo is back, the one after it still next
        assert (slip, A) not in live_labels(stack)
        item = label_and_check(driver, queue, slip, planned[slip])
        seen.append(item)
        planned[item] = "cbb" if planned[item] != "cbb" else "cbsd"  # ... but on the fourth photo
        item = label_and_check(driver, queue, item, planned[item])
        seen.append(item)
        queue.shots.mkdir(parents=True, exist_ok=True)
        shot = queue.shots / "workbench.png"
        assert driver.save_screenshot(str(shot))  # mid-queue, A's answer beside the model's, the next photo up
        assert label_and_check(driver, queue, item, planned[item]) == 0  # nothing left for A
        assert sorted(seen) == sorted(queue.model)
    a_said = {item: label for (item, name), label in live_labels(stack).items() if name == A}
    assert a_said == planned
    with Session(stack.engine) as session:  # the slip is kept in the history, retracted
        slips = session.exec(select(PhotoLabel).where(col(PhotoLabel.item_id) == slip, col(PhotoLabel.label) ==
                                                      "unusable")).all()  # fmt: skip
        assert [row.retracted_at is not None for row in slips] == [True]

    b_said = {}
    with chromium(*TABLET) as driver:
        item = log_in(driver, origin, B)
        while item:
            b_said[item] = queue.farmer_said if item == queue.disputed else a_said[item]
            item = label_and_check(driver, queue, item, b_said[item], by=tap)  # B works on the touch screen
    assert live_labels(stack).keys() >= {(item, B) for item in queue.model}

    with Session(stack.engine) as session:
        disputed = session.get(ReviewItem, queue.disputed)
        assert disputed is not None
        assert disputed.status == ReviewStatus.ADJUDICATION
    with chromium(*UPRIGHT) as driver:
        assert log_in(driver, origin, C) == queue.disputed  # the disagreement, handed to a third first
        assert buttons_out_of_sight(driver) == []  # held upright, every answer is a tap away, no scrolling
        assert driver.find_elements(By.CSS_SELECTOR, ".adjudication")
        assert press(driver, KEY[queue.farmer_said], queue.disputed) == 0  # C decides; nothing else is C's
        driver.find_element(By.CSS_SELECTOR, "button.log-out").click()
        wait_for(lambda: urlparse(driver.current_url).path == "/login", 20, "the login page after logging out")
        driver.get(f"{origin}/review")  # the session has ended: back to the login page
        assert urlparse(driver.current_url).path == "/login"
    with Session(stack.engine) as session:
        final = {item.id: (item.status, item.final_label) for item in session.exec(select(ReviewItem)).all()}
    assert final == {item: (ReviewStatus.DONE, queue.farmer_said if item == queue.disputed else label)
                     for item, label in a_said.items()}  # fmt: skip

    first = [a_said[item] for item in sorted(queue.model)]
    second = [b_said[item] for item in sorted(queue.model)]
    operator = make_token(stack, "olu")
    response = httpx.get(f"{origin}/v1/review/agreement", headers={"Authorization": f"Bearer {operator}"})
    assert response.status_code == 200, response.text
    agreement = response.json()
    assert (agreement["items"], agreement["agreed"]) == (len(PHOTOS), len(PHOTOS) - 1)
    assert agreement["kappa"] == pytest.approx(cohen_kappa_score(first, second), abs=1e-3)
    assert set(agreement["per_agronomist"]) == {A, B}
    assert all(row["items"] == len(PHOTOS) for row in agreement["per_agronomist"].values())
    assert_screenshot(shot)


def make_token(stack: LiveStack, name: str) -> str:
    with Session(stack.engine) as session:
        user = find_user(session, name)
        assert user is not None
        return issue_token(session, user)


def assert_screenshot(shot: Path) -> None:
    with Image.open(shot) as image:
        image.load()
        assert (image.format, image.size) == ("PNG", TABLET)
        assert colours(image) > 2000  # a photo and the panel's bars, not a blank page
