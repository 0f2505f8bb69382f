"""The page for people in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) loads ``/``, searches, opens a study and sees its
thumbnails; the assertions are on the DOM, and a screenshot stays in the test's folder."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dicomweb_server import sample, web_server
from helpers import make_ct
from pydicom import dcmread
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_dicomweb import post, stow_body

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
needs_chromium = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Debian's chromium and chromium-driver are not installed")
WAIT = 60


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _thumbnails_loaded(driver: webdriver.Chrome) -> bool:
    images = driver.find_elements(By.CSS_SELECTOR, "#series img")
    return bool(images) and all(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                              image) for image in images)


@needs_chromium
def test_page_searches_opens_a_study_and_shows_thumbnails(
        tmp_path: Path, browser: webdriver.Chrome) -> None:
    ct = sample("CT_small.dcm")
    study_uid = dcmread(ct).StudyInstanceUID
    second = make_ct(tmp_path, study_uid=study_uid, patient_name="CompressedSamples^CT1",
                     patient_id="1CT1", modality="MR", rows=64)
    others = [make_ct(tmp_path, patient_name="Other^Person", patient_id="X9")]
    with web_server(tmp_path) as web:
        response = post(web.dicomweb() + "/studies",
                        stow_body(Path(ct).read_bytes(), second.read_bytes(),
                                  *(o.read_bytes() for o in others)))
        assert response.status_code == 200, response.text
        browser.get(web.root + "/")
        area_link = browser.find_element(By.LINK_TEXT, "ARCHIVE")
        assert "RW" in browser.find_element(By.ID, "areas").text
        area_link.click()
        assert len(browser.find_elements(By.CSS_SELECTOR, "#studies tr.study")) == 2
        browser.find_element(By.NAME, "PatientName").send_keys("compressed")
        browser.find_element(By.ID, "search").click()
        WebDriverWait(browser, WAIT).until(lambda d: "PatientName=compressed" in d.current_url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#studies tr.study")
        assert len(rows) == 1 and "1CT1" in rows[0].text
        rows[0].find_element(By.TAG_NAME, "a").click()
        WebDriverWait(browser, WAIT).until(lambda d: f"/studies/{study_uid}" in d.current_url)
        series_rows = browser.find_elements(By.CSS_SELECTOR, "#series tr.series")
        assert sorted(r.find_elements(By.TAG_NAME, "td")[2].text for r in series_rows) == [
            "CT", "MR"]
        WebDriverWait(browser, WAIT).until(_thumbnails_loaded)
        browser.save_screenshot(str(tmp_path / "study-page.png"))
        assert (tmp_path / "study-page.png").stat().st_size > 0
        download = browser.find_element(By.ID, "download").get_attribute("href")
        assert download is not None
        with zipfile.ZipFile(io.BytesIO(requests.get(download, timeout=WAIT).content)) as z:
            assert len(z.namelist()) == 2
        browser.find_element(By.ID, "delete").click()
        browser.find_element(By.ID, "confirm").click()
        WebDriverWait(browser, WAIT).until(lambda d: d.current_url.endswith("/ui/ARCHIVE"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#studies tr.study")) == 1
        browser.get(web.root + "/ui/READONLY")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#studies tr.study")) == 1
        browser.get(f"{web.root}/ui/READONLY/studies/{dcmread(others[0]).StudyInstanceUID}")
        assert browser.find_elements(By.ID, "delete") == []
