"""Takes the screenshots of docs/tensorboard.md from a real TensorBoard.

Trains a short run of every registered model (and one profiled run) into
one logdir, serves it with TensorBoard on 127.0.0.1 and photographs the
Time Series, Images, Text, HParams and Profile tabs with headless Chromium
from the Debian packages `chromium` and `chromium-driver`, driven by
Selenium (no browser is downloaded). Each picture waits until the page
shows what it is about (chart lines drawn, the run rows listed).

```
apt-get install chromium chromium-driver
pip install -e ".[profile]" selenium
python docs/make_tensorboard_screenshots.py              # train, serve, shoot
python docs/make_tensorboard_screenshots.py --logdir runs  # an existing logdir
```

`tests/test_tensorboard.py` drives the same browser through
`start_browser`, `wait_for_text` and `charts_drawn`.
"""

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
IMAGES = os.path.join(ROOT, "docs", "images")

# Every text on the page, through the shadow roots of TensorBoard's
# Polymer dashboards (HParams) and into same-origin iframes (Profile).
_DEEP_TEXT = """
const out = [];
const walk = (node) => {
  if (node.shadowRoot) walk(node.shadowRoot);
  if (node.tagName === 'IFRAME') {
    try { walk(node.contentDocument.body); } catch (e) {}
  }
  for (const child of node.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) out.push(child.textContent);
    else if (!['STYLE', 'SCRIPT', 'NOSCRIPT'].includes(child.tagName)) walk(child);
  }
};
walk(document.body);
return out.join(' ');
"""

# The chart canvases of Time Series' scalar cards on the page.
_CHART_CANVASES = "return Array.from(document.querySelectorAll('scalar-card line-chart canvas'));"


# Types into the first input whose placeholder starts with arguments[0],
# shadow roots included (Angular and Polymer dashboards alike).
_TYPE_FILTER = """
const [prefix, text] = arguments;
const find = (root) => {
  // A native input, or a Polymer paper-input, whose value is bound.
  for (const el of root.querySelectorAll('*')) {
    const hint = String(el.placeholder || el.label || el.getAttribute('placeholder') || '');
    if (hint.startsWith(prefix) && 'value' in el) return el;
  }
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const found = find(el.shadowRoot); if (found) return found; }
  }
  return null;
};
const input = find(document);
if (!input) return false;
input.focus();
input.value = text;
input.dispatchEvent(new Event('input', {bubbles: true, composed: true}));
input.dispatchEvent(new Event('change', {bubbles: true, composed: true}));
input.blur();  // Closes the tag autocompletion over the charts.
return true;
"""


# Ticks the HParams sidebar's checkboxes (columns) of class arguments[0]
# whose label matches arguments[1], and unticks the others.
_SHOW_COLUMNS = """
const [kind, pattern] = arguments;
const keep = new RegExp(pattern);
let changed = 0;
const walk = (root) => {
  for (const el of root.querySelectorAll('.' + kind)) {
    const label = el.textContent.trim();
    if (keep.test(label) !== Boolean(el.checked)) { el.click(); changed++; }
  }
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) walk(el.shadowRoot);
};
walk(document);
return changed;
"""


def show_columns(driver, hparams, metrics):
    """Keeps only the HParams table columns whose names match the regexes."""
    driver.execute_script(_SHOW_COLUMNS, "hparam-checkbox", hparams)
    driver.execute_script(_SHOW_COLUMNS, "metric-checkbox", metrics)


def type_filter(driver, placeholder, text, timeout=30):
    """Types `text` into the filter box whose placeholder starts with `placeholder`."""
    deadline = time.monotonic() + timeout
    while not driver.execute_script(_TYPE_FILTER, placeholder, text):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no '{placeholder}' box at {driver.current_url}")
        time.sleep(0.5)


def start_browser(width=1400, height=1000):
    """Headless Chromium under Selenium, with a fresh profile and no network
    beyond the pages it is sent to."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="zoo-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def page_text(driver):
    """All the text of the page, shadow roots and iframes included."""
    return driver.execute_script(_DEEP_TEXT)


def charts_drawn(driver, limit=12):
    """How many Time Series charts on the page have their lines drawn.

    TensorBoard draws the lines on a canvas (WebGL or a worker's
    offscreen canvas, neither readable from the page), so each chart is
    photographed and counted when it holds coloured pixels: the grid and
    axes are grey, the runs' lines are not.
    """
    import io

    from PIL import Image

    drawn = 0
    for canvas in driver.execute_script(_CHART_CANVASES)[:limit]:
        if not canvas.is_displayed() or canvas.size["width"] < 10:
            continue
        image = Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("HSV")
        pixels = getattr(image, "get_flattened_data", image.getdata)()  # Pillow 12 renamed it.
        coloured = sum(1 for _, saturation, value in pixels if saturation > 80 and value > 60)
        drawn += coloured > 30
    return drawn


def wait_for_text(driver, texts, timeout=60):
    """Waits until every string of `texts` is on the page; returns the text.

    Raises:
        TimeoutError: naming the strings still missing.
    """
    deadline = time.monotonic() + timeout
    while True:
        text = page_text(driver)
        missing = [t for t in texts if t not in text]
        if not missing:
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page at {driver.current_url} never showed {missing}; "
                               f"it shows: {text[:1500]!r}")
        time.sleep(0.5)


def wait_for_charts(driver, minimum=1, timeout=60):
    deadline = time.monotonic() + timeout
    while charts_drawn(driver) < minimum:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {minimum} charts drawn at {driver.current_url}")
        time.sleep(0.5)
    time.sleep(1.0)  # The last frame of the chart's animation.


def train_runs(logdir, epochs):
    """A short run of every model, and a profiled mlp_regressor run."""
    sys.path.insert(0, ROOT)
    import zoo

    from pydoc_data import topics

    # 40 KB of Python's documentation, so that a small GPT-2 trains in minutes.
    os.makedirs(logdir, exist_ok=True)
    text = os.path.join(os.path.dirname(os.path.abspath(logdir)), "pydoc-40k.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n\n".join(topics.topics[k] for k in sorted(topics.topics))[:40_000])
    small = {
        "mlp_regressor": dict(data_options={"num_train": 2000}, batch_size=64),
        "dcgan": dict(batch_size=64),
        "image_classifier": dict(batch_size=64),
        "gpt2_textgen": dict(data=text, batch_size=16, num_layers=2, hidden_dim=64, intermediate_dim=128,
                             num_heads=2, sequence_length=64, max_sequence_length=128),
    }
    for name in zoo.list_models():
        kwargs = small.get(name, dict(zoo.registry.get_entry(name).tiny))
        zoo.train(name, epochs=epochs, run_dir=os.path.join(logdir, name), verbose=0, **kwargs)
    zoo.train("mlp_regressor", epochs=1, run_dir=os.path.join(logdir, "mlp_regressor_profiled"),
              profile_batch=(20, 30), data_options={"num_train": 2000}, batch_size=64, verbose=0)


@contextlib.contextmanager
def serve(logdir, *flags):
    """TensorBoard on 127.0.0.1 over `logdir`; yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
         "--port", str(port), *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/data/plugin/scalars/tags", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"TensorBoard did not start on {base}")
                time.sleep(0.5)
        time.sleep(3)  # One pass of the loader over every run.
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def shoot(driver, base, out_dir, models):
    """The screenshots of docs/tensorboard.md; returns their paths."""
    paths = []

    def save(name):
        path = os.path.join(out_dir, f"tensorboard_{name}.png")
        driver.save_screenshot(path)
        paths.append(path)

    def open_tab(tab):
        driver.get("about:blank")  # A new hash alone would not reload the page.
        driver.get(f"{base}/#{tab}")

    open_tab("timeseries")
    wait_for_text(driver, ["epoch_loss"])
    for button in driver.find_elements("css selector", "button[aria-label='Close side pane']"):
        if button.is_displayed():
            button.click()
    type_filter(driver, "Filter tags", "epoch_loss|epoch_accuracy|fid$")
    driver.find_element("css selector", "body").send_keys("\ue00c")  # Escape: no autocompletion.
    time.sleep(2)
    wait_for_charts(driver, 2)
    save("time_series")

    open_tab("images")
    wait_for_text(driver, ["samples"])
    time.sleep(3)
    save("images")

    open_tab("text")
    wait_for_text(driver, ["samples/greedy", "run_summary"])
    type_filter(driver, "Filter tags", "samples")
    wait_for_text(driver, ["Sample 1"])
    time.sleep(2)
    save("text")
    type_filter(driver, "Filter tags", "run_summary")
    time.sleep(2)
    save("summary")

    driver.set_window_size(2200, 1000)  # Room for the metric columns.
    open_tab("hparams")
    wait_for_text(driver, models + ["evaluation/"])
    show_columns(driver, r"^(model|data|model\.(hidden_units|latent_dim|num_layers|stage_widths)|train\.epochs)$",
                 r"^(validation\.epoch_loss|evaluation/(test_mse|test_r2|fid|fid_progress|val_perplexity|"
                 r"bits_per_byte_vs_xz|test_accuracy))$")
    time.sleep(3)
    save("hparams")
    driver.set_window_size(1400, 1000)

    open_tab("profile")
    deadline = time.monotonic() + 300
    while True:
        text = page_text(driver)
        if "Step-time Graph" in text and "Loading" not in text:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Profile tab never showed its overview: {text[:1500]!r}")
        time.sleep(1)
    time.sleep(3)
    save("profile")
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", help="photograph this logdir instead of training one")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", default=IMAGES, help="where the PNGs go (docs/images)")
    args = parser.parse_args(argv)
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            parser.error(f"{path} is missing: apt-get install chromium chromium-driver")
    logdir = args.logdir or os.path.join(tempfile.mkdtemp(prefix="zoo-tb-shots-"), "runs")
    if not args.logdir:
        train_runs(logdir, args.epochs)
    sys.path.insert(0, ROOT)
    import zoo

    os.makedirs(args.out, exist_ok=True)
    driver = start_browser()
    try:
        with serve(logdir, "--samples_per_plugin", f"images={args.epochs}") as base:
            for path in shoot(driver, base, args.out, zoo.list_models()):
                print(path)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
