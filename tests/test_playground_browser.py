"""The playground page driven in headless Chromium (Selenium): pick a model, type, click, read the result.

Skipped unless selenium, a Chromium (or Chrome) binary and its chromedriver are installed, e.g.
``apt-get install chromium chromium-driver`` and ``pip install -e '.[test,browser]'``.
Screenshots go to the test's tmp folder; set ``RNNKIT_PLAYGROUND_SCREENSHOT=docs/playground.png`` to copy
the translation screenshot there as well, and ``RNNKIT_PLAYGROUND_INSPECT_SCREENSHOT=docs/playground-inspect.png``
for the inspect view's.
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
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
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


def _copy_screenshot(shot: Path, variable: str) -> None:
    if os.environ.get(variable):
        target = Path(os.environ[variable])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


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
    _copy_screenshot(shot, "RNNKIT_PLAYGROUND_SCREENSHOT")


INSPECT_TEXT = "the cat sat on the mat.\nthe dog ran on the mat.\nthe cat ran."


def _hover(driver, i: int) -> dict:
    """Hover character ``i`` of the inspect view; what its panel lists: top units and the selected unit's rows."""
    span = driver.find_element(By.CSS_SELECTOR, f'#inspect-text .ch[data-i="{i}"]')
    ActionChains(driver).move_to_element(span).perform()
    panel = driver.find_element(By.ID, "inspect-hover")
    WebDriverWait(driver, 10).until(lambda d: panel.is_displayed() and panel.get_attribute("data-index") == str(i))
    rows = lambda css: [(r.get_attribute("data-unit") or r.get_attribute("data-gate"),  # noqa: E731
                         float(r.get_attribute("data-value"))) for r in panel.find_elements(By.CSS_SELECTOR, css)]
    assert "hovered" in span.get_attribute("class")
    return {"top": [(int(u), v) for u, v in rows("#hover-top .top-unit")], "unit": rows("#hover-unit tr"),
            "text": panel.text}


def test_playground_inspect_view(driver, url, tmp_path):
    driver.get(url + "/")
    WebDriverWait(driver, 30).until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 4)
    Select(driver.find_element(By.ID, "model")).select_by_value("tiny-lm")
    assert driver.find_element(By.ID, "controls-generate").is_displayed()
    driver.find_element(By.ID, "mode-inspect").click()
    assert driver.find_element(By.ID, "controls-inspect").is_displayed()
    assert not driver.find_element(By.ID, "controls-generate").is_displayed()
    assert driver.find_element(By.ID, "mode-inspect").get_attribute("aria-selected") == "true"

    # the text, one span per character, coloured by the first chosen unit (the units `rnnkit inspect` picks)
    assert _ask(driver, "tiny-lm", INSPECT_TEXT) == "done"
    api = httpx.post(url + "/api/inspect", json={"model": "tiny-lm", "text": INSPECT_TEXT}).json()
    spans = driver.find_elements(By.CSS_SELECTOR, "#inspect-text .ch")
    assert len(spans) == len(INSPECT_TEXT) == len(api["tokens"])
    assert "".join(s.text for s in spans) == INSPECT_TEXT.replace("\n", "↵")
    picker = Select(driver.find_element(By.ID, "inspect-unit"))
    assert [int(o.get_attribute("value")) for o in picker.options] == api["units"]
    first = api["units"][0]
    assert [float(s.get_attribute("data-value")) for s in spans] == api["activations"][str(first)]
    assert len({s.value_of_css_property("background-color") for s in spans}) > 5
    features = [r.get_attribute("data-feature") for r in driver.find_elements(By.CSS_SELECTOR, "#correlations tr")]
    assert features == list(api["correlations"])

    # hover a character: its most active units, the selected unit's hidden state and gates
    i = INSPECT_TEXT.index("dog")
    seen = _hover(driver, i)
    assert seen["top"] == [tuple(p) for p in api["top_units"][i]] and len(seen["top"]) == 5
    assert seen["unit"] == [("hidden state", api["activations"][str(first)][i])] + [
        (g, api["gates"][g][i]) for g in ("input gate", "forget gate", "output gate")]
    assert f"unit {seen['top'][0][0]}" in seen["text"] and "forget gate" in seen["text"]
    shot = tmp_path / "inspect.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    _copy_screenshot(shot, "RNNKIT_PLAYGROUND_INSPECT_SCREENSHOT")

    # chosen units; picking another one recolours the text and asks again for its gates
    units = driver.find_element(By.ID, "units")
    units.send_keys("3, 5")
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "result-inspect").get_attribute(
        "data-gates-unit") == "3" and d.find_element(By.ID, "result").get_attribute("data-state") == "done")
    Select(driver.find_element(By.ID, "inspect-unit")).select_by_value("5")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "result-inspect").get_attribute(
        "data-gates-unit") == "5" and d.find_element(By.ID, "result").get_attribute("data-state") == "done")
    five = httpx.post(url + "/api/inspect", json={"model": "tiny-lm", "text": INSPECT_TEXT, "units": [5, 3]}).json()
    spans = driver.find_elements(By.CSS_SELECTOR, "#inspect-text .ch")
    assert [float(s.get_attribute("data-value")) for s in spans] == five["activations"]["5"]
    seen = _hover(driver, 2)
    assert seen["unit"][0] == ("hidden state", five["activations"]["5"][2])
    assert dict(seen["unit"][1:]) == {g: v[2] for g, v in five["gates"].items()}

    # a bad request shows its message; Generate mode is back to continuing text
    units.clear()
    units.send_keys("99")
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "result").get_attribute("data-state") == "error")
    assert "units: must be in [0, 16)" in driver.find_element(By.ID, "error").text
    driver.find_element(By.ID, "mode-generate").click()
    assert not driver.find_element(By.ID, "result-inspect").is_displayed()
    assert _ask(driver, "tiny-lm", "the c", seed="1", length="10") == "done"
    assert driver.find_element(By.ID, "generated").get_attribute("textContent").startswith("the c")
