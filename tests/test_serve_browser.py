"""The page at `/` of `fastseg serve`, used in headless Chromium driven by Selenium, as a person
would: choose a generated image, wait for the mask over it, and read the legend. Its classes
and shares must be those of `POST /v1/segment?format=json` for the same file; the page must not
overflow a 1280 px window nor a 390 px phone screen. Skipped only where Chromium, its driver or
Selenium is missing (Debian: `apt-get install chromium chromium-driver`, `pip install selenium`).

Screenshots are written to the test's folder, and copied to `$FASTSEG_SCREENSHOTS` when set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from model_files import save_seeded_voc_model, seeded_voc_model
from PIL import Image
from test_serve import live_server

from fastseg.classes import Classes
from fastseg.inference.segmenter import Segmenter
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.serving.app import create_app
from fastseg.serving.settings import ServeSettings

BROWSER = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="Selenium is not installed (pip install selenium)"
)
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no Chromium and chromedriver found (Debian: apt-get install chromium chromium-driver)",
)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def photo(path: Path) -> Path:
    """A 320x240 picture: a gradient, a square and a disc, a little noise (several classes from the
    test model)."""
    rows, columns = np.mgrid[0:240, 0:320]
    pixels = np.stack([columns * 0.7, rows * 0.9 + 20, 255 - columns * 0.5], axis=-1)
    pixels[40:150, 30:140] = (220, 60, 40)
    pixels[((rows - 170) ** 2 + (columns - 240) ** 2) < 50**2] = (30, 160, 60)
    pixels = (pixels + np.random.default_rng(4).normal(0, 6, pixels.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver, width: int, height: int, mobile: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def screenshot(driver, path: Path) -> None:
    """The whole page at the current width."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")
    viewport(driver, width, height, width < 500)
    path.write_bytes(driver.get_screenshot_as_png())
    if os.environ.get("FASTSEG_SCREENSHOTS"):
        target = Path(os.environ["FASTSEG_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


OVERFLOW = """
const width = document.documentElement.clientWidth;
return [document.documentElement.scrollWidth - width,
        [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > width + 1)
          .map(e => e.tagName + '#' + e.id)];
"""


@pytest.mark.slow
def test_the_page_shows_the_mask_and_the_legend_of_the_api(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    torch.manual_seed(0)
    names = [f'<b class="x">c{index}</b> & "q"' for index in range(21)]  # markup is shown as text
    model = save_model(
        tmp_path / "model.pth",
        seeded_voc_model(),
        ModelConfig(num_classes=len(names)),
        size=32,
        classes=Classes.create(names),
    )
    image = photo(tmp_path / "shapes.png")
    app = create_app(Segmenter.open(model, torch.device("cpu")), ServeSettings())
    with live_server(app) as url:
        expected = httpx.post(
            f"{url}/v1/segment?format=json", files={"file": (image.name, image.read_bytes())}
        )
        expected = expected.json()
        present = sorted(
            (entry for entry in expected["classes"] if entry["fraction"] > 0),
            key=lambda entry: -entry["fraction"],
        )
        assert len(present) >= 2

        for width, height, mobile in ((1280, 900, False), (390, 844, True)):
            viewport(browser, width, height, mobile)
            browser.get(f"{url}/")
            WebDriverWait(browser, 30).until(
                lambda driver: "classes" in driver.find_element(By.ID, "model").text
            )
            assert "21 classes · 32px squish · torch" in browser.find_element(By.ID, "model").text
            browser.find_element(By.ID, "file").send_keys(str(image))
            WebDriverWait(browser, 60).until(
                lambda driver: driver.execute_script(
                    "return document.getElementById('stage').dataset.ready === '1'"
                )
            )
            rows = browser.find_elements(By.CSS_SELECTOR, "#legend tbody tr")
            shown = [
                (
                    int(row.get_attribute("data-index")),
                    float(row.get_attribute("data-fraction")),
                    row.find_element(By.CSS_SELECTOR, "td.name").text,
                    row.find_element(By.CSS_SELECTOR, "td.share").text,
                )
                for row in rows
            ]
            assert shown == [
                (entry["index"], entry["fraction"], entry["name"], f"{100 * entry['fraction']:.1f} %")
                for entry in present
            ]
            assert browser.find_elements(By.CSS_SELECTOR, "#legend b, b.x") == []
            mask = browser.find_element(By.ID, "mask")
            assert browser.execute_script("return arguments[0].naturalWidth", mask) == 320
            assert browser.execute_script("return arguments[0].complete", mask)
            link = browser.find_element(By.ID, "download")
            assert link.get_attribute("href") == "data:image/png;base64," + expected["mask_png_base64"]
            assert link.get_attribute("download") == "shapes.png"
            screenshot(browser, tmp_path / f"serve-{width}.png")
            with Image.open(tmp_path / f"serve-{width}.png") as shot:
                assert shot.width == width
            browser.execute_script(
                "const s = document.getElementById('opacity'); s.value = 20;"
                "s.dispatchEvent(new Event('input'));"
            )
            assert mask.value_of_css_property("opacity") == "0.2"
            overflow, wide = browser.execute_script(OVERFLOW)
            assert (overflow, wide) == (0, []), width
            status = browser.find_element(By.ID, "status").text
            assert status == "shapes.png: 320×240"

        browser.get(f"{url}/")  # an error is shown as the server's line, not a blank page
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"not a picture")
        browser.find_element(By.ID, "file").send_keys(str(broken))
        WebDriverWait(browser, 30).until(
            lambda driver: driver.find_element(By.ID, "status").text.startswith("not")
        )
        assert (
            browser.find_element(By.ID, "status").text == "not a usable image: not an image Pillow can read"
        )


SWAGGER_OPERATIONS = """
return [...document.querySelectorAll('.opblock')].map(block => [
  block.querySelector('.opblock-summary-method').textContent,
  block.querySelector('.opblock-summary-path').textContent.replace(/\\u200b/g, '')]);
"""


@pytest.mark.slow
def test_the_api_docs_render_offline_from_this_server_alone(browser, tmp_path):
    """/docs draws every operation, with each file it loads from this server (the machine is
    offline; the page's CSP would block any other origin). With --token, the browser is given the
    token by the page's Basic challenge (credentials in the URL stand for the person typing them),
    and Swagger UI's requests carry it: the spec's, and "Try it out" on GET /v1/model."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = save_seeded_voc_model(tmp_path / "model.pth")
    for token in (None, "s3cret"):
        app = create_app(Segmenter.open(model, torch.device("cpu")), ServeSettings(token=token))
        with live_server(app) as url:
            if token is not None:  # answers the challenge; the browser keeps it for this origin
                browser.get(f"{url.replace('//', '//me:s3cret@')}/docs")
            browser.get(f"{url}/docs")  # a fetch from a page whose URL holds credentials is refused
            WebDriverWait(browser, 60).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, ".opblock"))
            operations = browser.execute_script(SWAGGER_OPERATIONS)
            assert ["POST", "/v1/segment"] in operations and ["GET", "/v1/model"] in operations
            assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("fastseg")
            loaded = browser.execute_script(
                "return performance.getEntriesByType('resource').map(entry => entry.name)"
            )
            assert f"{url}/openapi.json" in loaded and f"{url}/docs/assets/swagger-ui-bundle.js" in loaded
            assert [name for name in loaded if not name.startswith(url + "/")] == []
            screenshot(browser, tmp_path / f"docs-{'token' if token else 'open'}.png")

            block = browser.find_element(By.ID, "operations-model-model_v1_model_get")  # Try it out
            block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
            WebDriverWait(block, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
            block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
            WebDriverWait(block, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".execute"))
            block.find_element(By.CSS_SELECTOR, ".execute").click()
            WebDriverWait(block, 30).until(
                lambda b: b.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
            )
            status = block.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
            assert status.text.strip() == "200"
            assert '"fastseg_version"' in block.find_element(By.CSS_SELECTOR, ".live-responses-table").text
