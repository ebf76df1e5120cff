"""The web page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium) asks a question of a live `mlx-rag serve`, makes music from the answer on
the smoke checkpoint, plays it, and finds its waveform, provenance and library entry.

Skipped, saying why, where Chromium or its driver is not installed (`.ci/run` installs both).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.server.conftest import SMOKE
from tests.server.test_live import TOKEN, Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WAIT = 120
# Seconds of audio the page asks for: long enough that the page's polls of the job (every
# 250 ms) see it between 0 and 1, not only queued and done.
DURATION = 8
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,1800",
         "--autoplay-policy=no-user-gesture-required")

PAINTED = """
    const canvas = arguments[0];
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return [canvas.width, painted];"""  # the canvas's width and its painted pixels

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no Chromium here: install Debian's `chromium` and `chromium-driver` packages "
           "(.ci/run does) to run the browser test",
)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is missing: pip install -e "
                                           "'packages/rag_core[test]'")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture
def server(music_library, tmp_path):
    server = Server(tmp_path / "server.log", env={"MLX_RAG_TOKEN": TOKEN})
    yield server
    server.stop()


def until(driver, condition, what: str, timeout: float = WAIT):
    """Wait until ``condition(driver)`` is truthy; fail saying ``what`` did not happen."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except Exception as exc:
        raise AssertionError(f"{what} did not happen: {type(exc).__name__}") from None


def test_ask_make_music_from_the_answer_and_play_it(browser, server, tmp_path, mlx_rag_home):
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(f"{server.url}/#token={TOKEN}")
    until(driver, lambda d: d.find_element(By.ID, "status").text.startswith("version"),
          "connecting with the token")
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".music-settings select"),
          "the music part of the page")

    driver.find_element(By.ID, "question").send_keys("Why do ships sound horns in the harbour?")
    driver.find_element(By.ID, "ask").click()
    button = until(driver, lambda d: d.find_element(By.ID, "music-from-answer").is_displayed()
                   and d.find_element(By.ID, "music-from-answer"), "the answer")
    assert driver.find_element(By.ID, "answer").text.startswith("[1][1]")
    assert "harbour.md" in driver.find_element(By.ID, "passages").text

    duration = driver.find_element(By.CSS_SELECTOR, ".music-settings input[name=duration]")
    duration.clear()
    duration.send_keys(str(DURATION))
    driver.find_element(By.CSS_SELECTOR, ".music-settings input[name=seed]").send_keys("5")
    button.click()

    progress = until(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".music-job progress"),
                     "a progress bar")
    values = set()
    track = None
    deadline = time.monotonic() + WAIT
    while track is None and time.monotonic() < deadline:  # follow the bar until the track
        values.add(float(progress.get_attribute("value")))
        found = driver.find_elements(By.CSS_SELECTOR, ".music-job .track audio[src^='blob:']")
        track = found[0] if found else None
        time.sleep(0.02)
    assert track is not None, driver.find_element(By.CSS_SELECTOR, ".music-job").text
    assert max(values) <= 1 and any(0 < v < 1 for v in values | {1.0}), values
    card = driver.find_element(By.CSS_SELECTOR, ".music-job .track")
    track_id = card.get_attribute("data-track-id")
    assert (mlx_rag_home / "music" / track_id).is_file()

    # Provenance: the prompt, where it came from, model, seed, options, the UNTRAINED label.
    provenance = card.find_element(By.CSS_SELECTOR, ".provenance").text
    for words in ("prompt", "the answer", "Why do ships sound horns", SMOKE, "seed\n5",
                  f"duration {DURATION}", "normalize loudness", "UNTRAINED", "harbour.md"):
        assert words in provenance, (words, provenance)
    link = card.find_element(By.CSS_SELECTOR, ".passage-link")
    assert link.text.startswith("[1]") and "harbour.md" in link.text
    link.click()  # shows passage 1 of the answer on the page
    until(driver, lambda d: "shown" in d.find_element(By.ID, "passage-1").get_attribute("class"),
          "passage 1 shown")

    # The waveform is drawn from the track's samples.
    drawn = driver.execute_script(PAINTED, card.find_element(By.CSS_SELECTOR, "canvas"))
    assert drawn[0] > 100 and drawn[1] > drawn[0], drawn

    # Play: the player has the whole track and its time runs.
    card.find_element(By.CSS_SELECTOR, "button.play").click()
    until(driver, lambda d: d.execute_script(
        "const a = arguments[0]; return a.currentTime > 0.2 || a.ended;", track),
        "the track playing")
    length = driver.execute_script("return arguments[0].duration;", track)
    assert length == pytest.approx(DURATION, abs=0.05)

    # The library lists it, with a player of its own; its waveform is drawn once in view.
    (entry,) = until(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, f"#track-library .track[data-track-id='{track_id}']"),
        "the track in the library")
    driver.execute_script("arguments[0].scrollIntoView()", entry)
    until(driver, lambda d: d.execute_script(PAINTED, entry.find_element(By.CSS_SELECTOR,
                                                                         "canvas"))[1] > 100,
          "the library's waveform")
    entry.find_element(By.CSS_SELECTOR, "button.play").click()
    until(driver, lambda d: entry.find_element(By.CSS_SELECTOR, "audio").get_attribute(
        "src").startswith("blob:"), "the library's player")

    driver.save_screenshot(str(tmp_path / "page.png"))
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == [], problems  # no script errors, nothing refused by the page's CSP
    assert not list(Path(mlx_rag_home / "music").glob(".*.part"))

    # Refresh: the library's old entries free their audio (blob URLs revoked, not leaked).
    played = entry.find_element(By.CSS_SELECTOR, "audio").get_attribute("src")
    readable = """const done = arguments[arguments.length - 1], audio = new Audio();
        audio.onloadedmetadata = () => done(true);
        audio.onerror = () => done(false);
        audio.src = arguments[0];"""  # whether a player can still load the URL
    assert driver.execute_async_script(readable, played)
    driver.find_element(By.XPATH, "//button[text()='Refresh']").click()
    until(driver, lambda d: not d.execute_async_script(readable, played),
          "the refreshed-away entry's blob URL revoked", timeout=10)
    (again,) = driver.find_elements(By.CSS_SELECTOR,
                                    f"#track-library .track[data-track-id='{track_id}']")
    assert again.find_element(By.CSS_SELECTOR, "audio").get_attribute("src") in (None, "")
