"""The dashboard in a real browser: Debian's chromium + chromedriver, driven by Selenium, against a real
`dojo serve` running real `dojo train` processes. Set DOJO_DASHBOARD_SCREENSHOT=PATH to also save a
screenshot of the job page while the job runs (`make dashboard-screenshot` does)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from .conftest import TINY_TOML

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: Flags that run headless Chromium as root in a sandboxed container, with no traffic beyond localhost.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1500")
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (make test-slow installs them)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 240, what: str = "condition"):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:  # the page swaps its live parts every 1.5 s: an element may go stale between two calls
            value = predicate()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _sign_in(driver, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/signin")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=token]").text == "Tenant token"
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    _wait(lambda: driver.find_elements(By.ID, "signout"), 30, "the signed-in page")


def _submit_from_form(driver, url: str, steps: int) -> str:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/submit")
    driver.find_element(By.ID, "config_text").send_keys(TINY_TOML)
    driver.find_element(By.ID, "overrides").send_keys(f"train.eval_every={max(2, steps // 5)}")
    driver.find_element(By.ID, "steps").send_keys(str(steps))
    driver.find_element(By.ID, "name").send_keys(HOSTILE)
    driver.find_element(By.ID, "submit").click()
    _wait(lambda: "/jobs/" in driver.current_url, 60, "the job page")
    return driver.current_url.rsplit("/", 1)[-1]


def _state(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "job-state").text.strip()


def test_submit_watch_isolate_and_sign_out_in_a_real_browser(service, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get(f"{service.url}/jobs/jnothing")
    assert browser.current_url.endswith("/signin")
    _sign_in(browser, service.url, service.tokens["team-a"])
    assert browser.find_element(By.TAG_NAME, "h1").text == "Jobs of team-a"
    cookie = browser.get_cookie("dojo_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read the session
    steps = 30 if os.environ.get("DOJO_DASHBOARD_SCREENSHOT") else 4
    job_id = _submit_from_form(browser, service.url, steps)
    assert browser.find_element(By.ID, "job-name").text == HOSTILE  # shown as text, never run
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    if shot := os.environ.get("DOJO_DASHBOARD_SCREENSHOT"):
        _wait(lambda: _state(browser) == "running" and int(
            browser.find_element(By.ID, "curves").get_attribute("data-points") or 0) >= 14, 240, "a curve")
        browser.save_screenshot(shot)
    _wait(lambda: _state(browser) in ("succeeded", "failed", "cancelled"), 300, "the job to end")
    assert _wait(lambda: _state(browser), 10, "the state") == "succeeded", \
        _wait(lambda: browser.find_element(By.CSS_SELECTOR, "pre.log").text, 10, "the log")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#curve-svg polyline.curve-train"), 30, "the curve")
    line = browser.find_element(By.CSS_SELECTOR, "#curve-svg polyline.curve-train")
    assert int(line.get_attribute("data-points")) == steps  # log_every = 1: one point per step
    assert browser.find_elements(By.CSS_SELECTOR, "#eval-svg polyline.curve-eval")
    # the panel stops refreshing once the job has ended, so its elements stay put from here on
    links = lambda: [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#panel a[download]")]  # noqa: E731
    _wait(lambda: "result.json" in links(), 30, "the artifacts")
    browser.get(service.url)
    assert job_id in browser.find_element(By.ID, "jobs").text

    browser.find_element(By.ID, "signout").click()
    _wait(lambda: browser.current_url.endswith("/signin"), 30, "sign-in after sign-out")
    _sign_in(browser, service.url, service.tokens["team-b"])
    assert job_id not in browser.find_element(By.ID, "jobs").text
    browser.get(f"{service.url}/jobs/{job_id}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"

    browser.find_element(By.ID, "signout").click()
    _wait(lambda: browser.current_url.endswith("/signin"), 30, "sign-in after sign-out")
    browser.get(f"{service.url}/jobs/{job_id}")
    assert browser.current_url.endswith("/signin")


def test_admin_sees_every_tenant_and_capacity_in_a_real_browser(service, browser):
    from selenium.webdriver.common.by import By

    _sign_in(browser, service.url, (service.data_dir / "admin.token").read_text().strip())
    assert browser.current_url.endswith("/admin")
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings == ["Capacity", "Tenants", "Slots (running)", "Queue"]
    tenants = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=tenants-h]").text
    assert "team-a" in tenants and "team-b" in tenants
    assert browser.find_element(By.ID, "cap-tiles").text
