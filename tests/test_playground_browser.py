"""The playground page driven in headless Chromium (Selenium): pick a model, type, click, read the result.

Skipped unless selenium, a Chromium (or Chrome) binary and its chromedriver are installed, e.g.
``apt-get install chromium chromium-driver`` and ``pip install -e '.[test,browser]'``.
Screenshots go to the test's tmp folder; set ``RNNKIT_PLAYGROUND_SCREENSHOT=docs/playground.png`` to copy
the translation screenshot there as well.
"""
import os
import shutil
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from rnnkit.serve import create_app  # noqa: E402

from test_serve import make_tiny_runs, running_server  # noqa: E402  (tests/ is on sys.path under pytest)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _find(names):
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def driver():
    browser, chromedriver = _find(BROWSERS), _find(("chromedriver",))
    if not (browser and chromedriver):
        pytest.skip("needs a Chromium binary and chromedriver on PATH (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,1050", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    try:
        d = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=opts)
    except WebDriverException as e:  # a browser that cannot start here is an environment problem
        pytest.skip(f"headless Chromium did not start: {e.msg}")
    d.set_page_load_timeout(30)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    runs = make_tiny_runs(tmp_path_factory.mktemp("playground"))
    with running_server(create_app(list(runs.values()))) as base:
        yield base


def _ask(driver, model: str, text: str, **fields: str) -> str:
    """Pick ``model``, fill the ``fields`` (input id -> value), type ``text``, click Run, wait for the
    answer; the result's state (done or error)."""
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    for id_, value in fields.items():
        field = driver.find_element(By.ID, id_.replace("_", "-"))
        field.clear()
        field.send_keys(value)
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "result").get_attribute("data-state") in ("done", "error"))
    return driver.find_element(By.ID, "result").get_attribute("data-state")


def test_playground_in_headless_chromium(driver, url, tmp_path):
    driver.get(url + "/")
    WebDriverWait(driver, 30).until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 4)
    names = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "model")).options]
    assert sorted(names) == ["tiny-classify", "tiny-lm", "tiny-seq2seq", "tiny-tag"]

    # classifier: one bar per class, the predicted class first and highlighted
    assert _ask(driver, "tiny-classify", "great fun film") == "done"
    rows = driver.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    assert [r.get_attribute("data-label") for r in rows] == ["pos", "neg"]
    assert "best" in rows[0].get_attribute("class")
    probs = [float(r.get_attribute("data-prob")) for r in rows]
    assert abs(sum(probs) - 1) < 1e-3 and probs[0] > 0.5
    widths = [r.find_element(By.CLASS_NAME, "bar-fill").size["width"] for r in rows]
    assert widths[0] > widths[1] > 0 or widths[1] == 0
    assert driver.find_element(By.ID, "predicted-label").text == "pos"
    driver.save_screenshot(str(tmp_path / "classify.png"))

    # tagger: a coloured span per token, a legend of the entity types
    assert _ask(driver, "tiny-tag", "John Smith lives in Paris .") == "done"
    tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .token")
    assert [t.find_element(By.CLASS_NAME, "word").text for t in tokens] == "John Smith lives in Paris .".split()
    tags = [t.get_attribute("data-tag") for t in tokens]
    assert tags[0] == "B-PER" and tags[4] == "B-LOC" and tags[2] == "O"
    colour = lambda t: t.value_of_css_property("background-color")  # noqa: E731
    assert colour(tokens[0]) == colour(tokens[1]) != colour(tokens[4])
    legend = [i.get_attribute("data-type") for i in driver.find_elements(By.CSS_SELECTOR, "#legend .legend-item")]
    assert {"PER", "LOC"} <= set(legend)
    driver.save_screenshot(str(tmp_path / "tag.png"))

    # language model: the continuation starts with the prime
    assert _ask(driver, "tiny-lm", "the c", seed="1", length="60") == "done"
    generated = driver.find_element(By.ID, "generated").get_attribute("textContent")
    same = httpx.post(url + "/api/generate", json={"model": "tiny-lm", "text": "the c", "length": 60, "seed": 1,
                                                   "temperature": 0.8, "top_p": 0.95}).json()
    assert generated == same["results"][0]["samples"][0] and generated.startswith("the c")
    assert not driver.find_element(By.ID, "controls-translate").is_displayed()
    driver.save_screenshot(str(tmp_path / "generate.png"))

    # a bad request shows its message; the next good one works
    assert _ask(driver, "tiny-classify", "   ") == "error"
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed() and "empty" in error.text

    # seq2seq: the translation and its attention heatmap on a canvas
    assert _ask(driver, "tiny-seq2seq", "cat dog bird fish cow") == "done"
    assert not driver.find_element(By.ID, "error").is_displayed()
    assert driver.find_element(By.ID, "translation").text == "COW FISH BIRD DOG CAT"
    canvas = driver.find_element(By.ID, "heatmap")
    assert (canvas.get_attribute("data-rows"), canvas.get_attribute("data-cols")) == ("6", "5")  # 5 words + <eos>
    assert canvas.size["width"] > 100 and canvas.size["height"] > 100
    shaded = driver.execute_script(
        "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128 && d[i + 2] > 200) n++; return n;", canvas)
    assert shaded > 100  # dark blue cells: attention drawn
    shot = tmp_path / "translate.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("RNNKIT_PLAYGROUND_SCREENSHOT"):
        target = Path(os.environ["RNNKIT_PLAYGROUND_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
