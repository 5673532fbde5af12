"""The agronomists' workbench in a real headless Chromium against a real stack (API, worker, Redis, database).

Photos a phone sent are diagnosed by the worker; a farmer disputes one; the queue is refreshed with every photo in it
and every item to be labelled by two agronomists. Amina logs in through the login page, labels five photos with the
keyboard only (the model's answer appears only after hers), undoes her last label and gives another. Baraka labels the
same photos, disagreeing on one; Chausiku is handed that one first, as an adjudication, and decides it. Agreement
(Cohen's kappa) is then what Amina's and Baraka's labels give. The screenshot in the README (a tablet, mid-queue, the
last answer beside the model's) is made here, into MHOGO_SCREENSHOT_DIR when it is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from sklearn.metrics import cohen_kappa_score
from sqlmodel import Session, col, select

from core import review
from core.config import Settings
from core.users import add_user, issue_token
from mhogo.browser import chromium
from schemas.statuses import JobStatus
from schemas.tables import Job, ReviewItem, ReviewStatus, Role
from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import sample_photo
from tests.utils.processes import wait_for

pytestmark = pytest.mark.integration

TABLET = (1024, 768)
KEY_OF = {"cbb": "1", "cbsd": "2", "cgm": "3", "cmd": "4", "healthy": "5"}
REVIEW = {"MHOGO_REVIEW_DOUBLE_SHARE": "1", "MHOGO_REVIEW_AUDIT_SHARE": "1", "MHOGO_COOKIE_SECURE": "false"}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp("workbench")
    with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", redis_url, REVIEW) as live:
        yield live


def diagnose(stack: LiveStack) -> list[str]:
    """Five photos from a phone, diagnosed by the worker; a farmer disputes the first."""
    with stack.client(stack.new_token("farmer")) as phone:
        jobs = []
        for n, kind in enumerate(("cbb", "cbsd", "cgm", "cmd", "healthy")):
            sent = phone.post("/v1/photos", content=sample_photo(kind, 3).read_bytes(),
                              headers={"Idempotency-Key": f"photo-{n}", "Content-Type": "image/jpeg"})  # fmt: skip
            assert sent.status_code in (200, 201, 202), sent.text
            jobs.append(sent.json()["job_id"])

        def finished() -> bool:
            with Session(stack.engine) as session:
                rows = session.exec(select(Job).where(col(Job.id).in_(jobs))).all()
            return all(JobStatus(row.status).terminal for row in rows)

        wait_for(finished, 120, "the worker's diagnoses")
        said = phone.get(f"/v1/jobs/{jobs[0]}").json()["result"]["label"]
        other = "cbb" if said != "cbb" else "cmd"
        assert phone.post(f"/v1/jobs/{jobs[0]}/feedback", json={"label": other}).status_code == 202
    return jobs


def refresh_queue(stack: LiveStack, jobs: list[str]) -> None:
    config = Settings(REVIEW_DOUBLE_SHARE=1.0, REVIEW_AUDIT_SHARE=1.0)

    def disputed() -> bool:
        with Session(stack.engine) as session:
            review.refresh(session, config)
            item = session.exec(select(ReviewItem).where(col(ReviewItem.job_id) == jobs[0])).first()
        return item is not None and any(reason["code"] == "farmer_disagreed" for reason in item.reasons)

    wait_for(disputed, 60, "the farmer's dispute in the queue")


def person(stack: LiveStack, name: str, role: Role = Role.AGRONOMIST) -> str:
    with Session(stack.engine) as session:
        user = add_user(session, name, role, f"password of {name}")
        return issue_token(session, user)


def origin(stack: LiveStack) -> str:
    return stack.api_url.replace("127.0.0.1", "localhost")


def log_in(browser: WebDriver, stack: LiveStack, name: str) -> None:
    browser.get(f"{origin(stack)}/review")
    wait_for(lambda: "/login" in browser.current_url, 10, "the login page")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(f"password of {name}")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: browser.current_url.endswith("/review") and shown(browser) is not None, 20, "the workbench")


def shown(browser: WebDriver) -> int | None:
    """The item on screen, once its photo has loaded; None while none is."""
    found = browser.find_elements(By.CSS_SELECTOR, "#photo")
    if not found or not browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                               found[0]):  # fmt: skip
        return None
    return int(found[0].get_attribute("data-item") or 0)


def press(browser: WebDriver, key: str, before: int | None) -> int | None:
    """Press one key, and wait for the screen to move on from `before` (or to say nothing is left)."""
    ActionChains(browser).send_keys(key).perform()

    def moved() -> bool:
        now = shown(browser)
        empty = bool(browser.find_elements(By.ID, "empty"))
        return (now is not None and now != before) or (empty and before is not None)

    wait_for(moved, 10, f"the screen after '{key}'")
    return shown(browser)


def screenshot(browser: WebDriver, name: str) -> None:
    folder = Path(os.environ.get("MHOGO_SCREENSHOT_DIR") or Path(__file__).parent / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(folder / name))


def test_agronomists_label_with_the_keyboard_undo_disagree_and_a_third_decides(stack: LiveStack) -> None:
    jobs = diagnose(stack)
    refresh_queue(stack, jobs)
    for name in ("amina", "baraka", "chausiku"):
        person(stack, name)
    operator = person(stack, "otieno", Role.OPERATOR)
    amina: dict[int, str] = {}
    with chromium(*TABLET) as browser:
        log_in(browser, stack, "amina")
        current = shown(browser)
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=model-said]")  # no anchoring
        assert "A farmer said" in browser.find_element(By.CSS_SELECTOR, ".reasons").text  # the dispute first
        for label in ("cbb", "cbsd", "cgm", "cmd", "healthy"):
            assert current is not None
            amina[current] = label
            following = press(browser, KEY_OF[label], current)
            if label == "cgm":
                screenshot(browser, "workbench.png")
            model = browser.find_element(By.CSS_SELECTOR, "[data-testid=model-said]").text
            assert "The model said" in model  # shown now that she has answered
            current = following
        assert browser.find_elements(By.ID, "empty")
        last = list(amina)[-1]
        assert press(browser, "z", None) == last  # undo: her last photo again
        amina[last] = "cmd"
        press(browser, KEY_OF["cmd"], last)
        assert browser.find_elements(By.ID, "empty")
    disputed = next(iter(amina))  # the farmer-disputed photo, handed out first
    baraka = {item: ("healthy" if item == disputed else label) for item, label in amina.items()}
    with chromium(*TABLET) as browser:
        log_in(browser, stack, "baraka")
        current = shown(browser)
        while current is not None:
            current = press(browser, KEY_OF[baraka[current]], current)
    with chromium(*TABLET) as browser:
        log_in(browser, stack, "chausiku")
        assert shown(browser) == disputed  # the disagreement, handed out first
        assert "disagreed" in browser.find_element(By.CSS_SELECTOR, ".adjudication").text
        press(browser, KEY_OF["cgm"], disputed)
        assert browser.find_elements(By.ID, "empty")
    with Session(stack.engine) as session:
        items = {item.id: item for item in session.exec(select(ReviewItem)).all()}
    assert {items[i].status for i in amina} == {ReviewStatus.DONE}
    assert items[disputed].final_label == "cgm"
    assert all(items[i].final_label == amina[i] for i in amina if i != disputed)
    found = httpx.get(f"{stack.api_url}/v1/review/agreement", headers={"Authorization": f"Bearer {operator}"}).json()
    order = sorted(amina)
    expected = cohen_kappa_score([amina[i] for i in order], [baraka[i] for i in order])
    assert (found["items"], found["agreed"]) == (5, 4)
    assert found["kappa"] == round(float(expected), 3)
    assert found["per_agronomist"]["amina"]["items"] == 5
