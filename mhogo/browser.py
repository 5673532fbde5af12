"""The dashboard in a real browser: headless Chromium through selenium, logged in with the operator's basic auth, a
screenshot taken once every chart has loaded, and checks that the screenshot shows charts rather than a blank page.

Needs Chromium and its driver at fixed paths (apt-get install -y chromium chromium-driver) and `selenium` in the venv;
without them it fails with the command that installs them, never skips.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from PIL import Image

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"

# Every .chart with its size and whether its image (or inline svg) has loaded, in CSS pixels of the page.
CHARTS_JS = """
return Array.from(document.querySelectorAll('.chart')).map(el => {
  const box = el.getBoundingClientRect();
  const img = el.querySelector('img');
  const svg = el.querySelector('svg');
  const loaded = img ? (img.complete && img.naturalWidth > 0) : (svg !== null && svg.getBBox().width > 0);
  return {name: el.dataset.chart || '', x: box.left + window.scrollX, y: box.top + window.scrollY,
          width: box.width, height: box.height, loaded: loaded};
});
"""


@dataclass(frozen=True)
class ChartBox:
    name: str
    x: float
    y: float
    width: float
    height: float
    loaded: bool


class BrowserMissing(RuntimeError):
    pass


@contextmanager
def chromium(
    width: int = 1400, height: int = 2400, profile: Path | None = None, language: str | None = None,
    mobile: bool = False,
) -> Iterator[WebDriver]:  # fmt: skip
    """Headless Chromium whose viewport (and so every screenshot) is width x height pixels. With `profile`, a user
    data folder that outlives the browser: quitting and starting again on it is a phone restarting (its service
    worker, caches and IndexedDB stay). `language` is what the browser asks pages for (navigator.language)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise BrowserMissing(f"{', '.join(missing)} not found: install Chromium with `{INSTALL}` (as root)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserMissing("selenium is not installed: `.venv/bin/pip install -e '.[dev]'`") from exc
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                 "--force-device-scale-factor=1", f"--window-size={width},{height}"]  # fmt: skip
    if profile is not None:
        arguments.append(f"--user-data-dir={profile}")
    if language is not None:
        arguments.append(f"--lang={language}")
        options.add_experimental_option("prefs", {"intl.accept_languages": language})
    for argument in arguments:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        # The window size includes the browser's frame even when headless: the viewport is set exactly.
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        yield driver
    finally:
        driver.quit()


def open_dashboard(driver: WebDriver, url: str, user: str, password: str, timeout: float = 20) -> list[ChartBox]:
    """Load the page with the operator's basic auth header and wait until every chart has loaded."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    driver.get(url)
    deadline = time.monotonic() + timeout
    while True:
        boxes = [ChartBox(**row) for row in driver.execute_script(CHARTS_JS)]
        if boxes and all(box.loaded for box in boxes):
            return boxes
        if time.monotonic() > deadline:
            raise AssertionError(f"charts not loaded after {timeout:.0f} s on {url}: {boxes}; page: "
                                 f"{driver.title!r} {driver.page_source[:300]!r}")  # fmt: skip
        time.sleep(0.2)


def screenshot_dashboard(url: str, user: str, password: str, out: Path, width: int = 1400, height: int = 2400) -> Path:
    """A PNG of the dashboard once every chart has loaded. Where each chart is on it goes beside, in
    `<out>.charts.json`, for chart_boxes() and screenshot_problems()."""
    with chromium(width, height) as driver:
        boxes = open_dashboard(driver, url, user, password)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise AssertionError(f"Chromium could not write {out}")
    charts_file(out).write_text(json.dumps([asdict(box) for box in boxes], indent=1))
    return out


def charts_file(shot: Path) -> Path:
    return shot.with_suffix(".charts.json")


def chart_boxes(shot: Path) -> list[ChartBox]:
    return [ChartBox(**row) for row in json.loads(charts_file(shot).read_text())]


def colours(image: Image.Image) -> int:
    return len(image.convert("RGB").getcolors(maxcolors=1 << 24) or [])


def screenshot_problems(shot: Path, width: int = 1400, height: int = 2400, min_colours: int = 200) -> list[str]:
    """What is wrong with a dashboard screenshot, if anything: not a PNG of the expected size, a near-blank page, or a
    chart that is missing, empty, outside the picture or one flat colour."""
    problems: list[str] = []
    with Image.open(shot) as image:
        image.load()
        if image.format != "PNG" or image.size != (width, height):
            return [f"{shot} is a {image.format} of {image.size}, expected a PNG of {(width, height)}"]
        if colours(image) < min_colours:
            problems.append(f"the page has {colours(image)} colours: blank?")
        for box in chart_boxes(shot):
            problems += chart_problems(image, box)
    return problems


def chart_problems(image: Image.Image, box: ChartBox) -> list[str]:
    name = box.name or "(unnamed)"
    if box.width < 50 or box.height < 50 or not box.loaded:
        return [f"chart {name} is {box.width:.0f}x{box.height:.0f}, loaded={box.loaded}"]
    if box.x + box.width > image.width or box.y + box.height > image.height:
        return [f"chart {name} at {box} is outside the {image.size} screenshot"]
    region = image.crop((int(box.x), int(box.y), int(box.x + box.width), int(box.y + box.height))).convert("L")
    low, high = cast(tuple[int, int], region.getextrema())  # one band: (min, max)
    distinct = colours(region)
    return [] if high - low > 100 and distinct > 20 else [f"chart {name} looks flat: {distinct} greys, {low}..{high}"]
