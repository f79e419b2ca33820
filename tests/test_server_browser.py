"""The upload page at ``/``, used the way a person uses it, in real headless Chromium.

Debian's chromium + chromedriver (``scripts/setup.sh`` installs them) load the page from an
in-process server; the test picks a photo in the file input, clicks Classify and reads the
rendered table, which must list the local Predictor's top-5 for that photo.
"""

from __future__ import annotations

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PHOTOS

MODEL = "Res2Net50_26w_4s"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # no browser: fail with the fix, never skip (CI must run this)
        pytest.fail(f"cannot start headless Chromium ({exc}); run `bash scripts/setup.sh`")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_server(paddle_reference):
    from res2net.deploy.predictor import Predictor
    from res2net.deploy.server import ModelService, ServeConfig, start_server

    predictor = Predictor(MODEL, str(paddle_reference(MODEL)[0]), num_workers=0)
    running = start_server(ModelService(predictor, ServeConfig(port=0, grpc_port=None)))
    yield running, predictor
    running.stop()


@pytest.mark.parametrize("photo", [PHOTOS[0], PHOTOS[-1]], ids=lambda p: p.name)
def test_upload_a_photo_and_see_the_top5(browser, page_server, photo):
    running, predictor = page_server
    browser.get(running.url + "/")
    assert MODEL in browser.title
    browser.find_element(By.ID, "file").send_keys(str(photo))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 120).until(
        expected_conditions.visibility_of_element_located((By.ID, "results"))
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tr.prediction")
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    expected = predictor.predict(photo)[0]
    assert [c[1] for c in cells] == expected.labels
    assert [int(c[2]) for c in cells] == expected.class_ids
    assert browser.find_element(By.ID, "status").text == f"top-5 of {MODEL}"


def test_page_reports_a_corrupt_file(browser, page_server, tmp_path):
    running, _ = page_server
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    browser.get(running.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(broken))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 60).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), "error")
    )
    assert "broken.jpg" in browser.find_element(By.ID, "status").text


def _banner(browser) -> list:
    return browser.find_elements(By.ID, "random-weights")


def test_page_says_what_is_served_and_no_banner_with_a_weights_file(browser, page_server):
    running, predictor = page_server
    browser.get(running.url + "/")
    assert _banner(browser) == []
    served = {
        key: browser.find_element(By.ID, f"served-{key}").text
        for key in ("model", "weights", "engine", "precision", "preprocessing")
    }
    assert served["model"] == MODEL
    assert served["weights"] == str(predictor.weights)
    assert (served["engine"], served["precision"]) == ("eager", "fp32")
    assert "resize short side 256" in served["preprocessing"]
    assert "center crop 224" in served["preprocessing"]


def test_random_weights_show_a_warning_banner(browser):
    """Random weights give confident nonsense: the page must say so before any upload."""
    from res2net.deploy.predictor import Predictor
    from res2net.deploy.server import ModelService, ServeConfig, start_server

    predictor = Predictor(MODEL, None, num_workers=0)
    running = start_server(ModelService(predictor, ServeConfig(port=0, grpc_port=None)))
    try:
        browser.get(running.url + "/")
        (banner,) = _banner(browser)
        assert banner.is_displayed()
        assert "random weights" in banner.text and "mean nothing" in banner.text
        assert browser.find_element(By.ID, "served-weights").text.startswith("random")
    finally:
        running.stop()
