"""The operator page in headless Chromium (Debian's chromium + chromium-driver, driven by selenium): it loads, shows
the camera's frames, an enrolment through the form appears in the gallery list, and an event naming the enrolled
person appears when she passes the camera. ``CRRES_SERVE_SCREENSHOT=path.png`` saves a screenshot of the page
(README's picture is taken this way)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.serve.conftest import png

NAME = "astronaut-page"


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as ChromeService
    except ImportError:
        pytest.skip("selenium is not installed (pip install \"crres[serve]\")")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("headless Chromium unavailable: Debian's chromium and chromium-driver packages are needed "
                    "(.ci/install-serve-deps.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--disable-extensions"):
        opts.add_argument(arg)
    try:
        return webdriver.Chrome(service=ChromeService(executable_path=driver), options=opts)
    except Exception as exc:  # a broken browser install: say why
        pytest.skip(f"headless Chromium did not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def _wait(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"the page did not show {what} within {timeout:g} s")


def test_operator_page(service, demo, tmp_path):
    http = service.http
    status, ids = http.request("GET", "/api/identities")
    for p in ids:  # she starts unknown
        http.request("DELETE", f"/api/identities/{p['name']}")
    photo_file = tmp_path / "astronaut.png"
    photo_file.write_bytes(png(demo[1]))
    driver = _browser()
    try:
        driver.get(http.base + "/")
        driver.execute_script("localStorage.setItem('crres-api-key', arguments[0]);", http.key)
        driver.get_log("browser")  # drop the first load's 401s (it had no key yet)
        driver.refresh()
        assert driver.title == "crres serve"
        _wait(driver, "return document.querySelector('#status').className === 'ok'", 30, "the API connected")
        width = _wait(driver, "const i = document.querySelector('#live-door');"
                              "return i && i.complete && i.naturalWidth;", 60, "a frame of camera door")
        assert width == 640
        _wait(driver, "return document.querySelector('#cam-door .title').textContent.includes('streaming')", 30,
              "the camera's state")
        driver.find_element("id", "enroll-name").send_keys(NAME)
        driver.find_element("id", "enroll-file").send_keys(str(photo_file))
        driver.find_element("id", "enroll-submit").click()
        _wait(driver, f"return document.querySelector('#identity-list li[data-name=\"{NAME}\"]')", 60,
              "the enrolled identity in the gallery list")
        result = driver.find_element("id", "enroll-result").text
        assert result.startswith(f"enrolled {NAME}"), result
        _wait(driver, f"return document.querySelector('#events tr.event[data-label=\"{NAME}\"]')", 90,
              f"an event naming {NAME}")
        row = driver.find_element("css selector", f"#events tr.event[data-label=\"{NAME}\"]")
        assert "door" in row.text and " px" in row.text
        assert driver.find_elements("css selector", f"#events tr.event[data-label=\"{NAME}\"] img")  # face crop
        shot = os.environ.get("CRRES_SERVE_SCREENSHOT")
        if shot:  # wait for a live frame with her named box, large enough to see
            try:
                _wait(driver, "const t = document.querySelector('#cam-door .faces').textContent;"
                              f"const m = t.match(/{NAME} [0-9.]+ r=([0-9]+)px/); return m && +m[1] >= 40;", 30,
                      "her named face in the live view")
                time.sleep(0.8)
            except AssertionError:
                pass
            driver.save_screenshot(shot)
        logs = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not logs, logs
    finally:
        driver.quit()
