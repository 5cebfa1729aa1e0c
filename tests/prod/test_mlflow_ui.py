"""What a user sees in the MLflow UI: a stage run's plot artifacts and a registered version's
aliases and description, in headless Chromium against `mlflow server` on PostgreSQL + S3
(tests/prod/conftest.py).

    make test-ui          # = .venv/bin/pytest tests/prod/test_mlflow_ui.py -m slow -q

Needs Debian's chromium and chromium-driver (`apt-get install -y chromium chromium-driver`);
without /usr/bin/chromium the test skips and says so. The UI is a React app: every check waits
for the text to appear (WebDriverWait), nothing sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from unireward.eval.ablation import AblationConfig
from unireward.eval.ablation import run as ablation
from unireward.registry.register import RegisterConfig
from unireward.registry.register import run as register
from unireward.tasks import TASKS

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WAIT_S = 60


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(
            f"{CHROMIUM} or {CHROMEDRIVER} missing: apt-get install -y chromium chromium-driver"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (dev)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)  # --no-sandbox: CI runs as root
    options.add_argument("--window-size=1600,1200")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _show(driver, url: str, *texts: str) -> str:
    """Open `url` and wait until the page's text holds every one of `texts`; the page text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    body = lambda: driver.find_element(By.TAG_NAME, "body").text  # noqa: E731
    try:
        WebDriverWait(driver, WAIT_S).until(lambda _: all(t in body() for t in texts))
    except TimeoutException:
        missing = [t for t in texts if t not in body()]
        pytest.fail(f"{url}: {missing} not shown after {WAIT_S} s; page text:\n{body()[:3000]}")
    return body()


def _wait(driver, condition, what: str = "condition"):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S).until(condition)
    except TimeoutException:
        pytest.fail(f"{driver.current_url}: {what} not met after {WAIT_S} s:\n{_text(driver)}")


def _text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _widths(driver) -> list[int]:
    """The natural width of every loaded <img> on the page."""
    return driver.execute_script(
        "return Array.from(document.images).filter(i => i.complete).map(i => i.naturalWidth)"
    )


def _show_more(driver, *texts: str) -> None:
    """Wait, on the page as it is, until its text holds every one of `texts`."""
    _wait(driver, lambda d: all(t in _text(d) for t in texts), f"text {list(texts)}")


def _click(driver, label: str) -> None:
    """Click the innermost element whose own text is `label` (a tree node, a tab)."""
    from selenium.webdriver.common.by import By

    xpath = f"//*[normalize-space(text())='{label}']"
    _wait(driver, lambda d: d.find_elements(By.XPATH, xpath), f"an element {label!r}")[-1].click()


def _evaluation(root: Path, name: str, diff: float) -> Path:
    metrics = {f"{t}/pairwise_diff": diff for t in TASKS} | {"pairwise_diff_mean": diff}
    (root / name).mkdir(parents=True)
    (root / name / "metrics.json").write_text(json.dumps(metrics))
    return root / name


def test_run_page_shows_the_plots_and_version_page_the_aliases(
    mlflow_server, tiny_model_dir, tmp_path, browser
):
    from mlflow import MlflowClient

    uri = mlflow_server.tracking_uri
    evaluations = {n: _evaluation(tmp_path, n, d) for n, d in (("judge", 0.6), ("grpo", 0.7))}
    result = ablation(AblationConfig(tracking_uri=uri), evaluations, tmp_path / "ablation")
    client = MlflowClient(uri)
    experiment = client.get_run(result.run_id).info.experiment_id

    # The run's Artifacts tab (MLflow 3: #/experiments/<id>/runs/<run id>/artifacts) lists the
    # plots/ folder; opened, it holds the figure, and selecting that previews it as an image.
    run_page = f"{uri}/#/experiments/{experiment}/runs/{result.run_id}/artifacts"
    _show(browser, run_page, "plots", "ablation")
    _click(browser, "plots")
    _show_more(browser, "ablation.png")
    _click(browser, "ablation.png")
    _show_more(browser, "Path:", "artifacts/plots/ablation.png")
    # the preview: an image as wide as the figure (600 px per panel), not an icon
    _wait(browser, lambda d: max(_widths(d), default=0) >= 600, "the figure's preview image")

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(json.loads((evaluations["grpo"] / "metrics.json").read_text())))
    config = RegisterConfig(model_name="UiJudge", tracking_uri=uri)
    version = register(config, tiny_model_dir, metrics, tmp_path / "reg", tags={"profile": "ui"})
    assert version.promoted
    page = _show(
        browser,
        f"{uri}/#/models/UiJudge/versions/{version.version}",
        "champion",
        "challenger",
        "Gate: promoted",
        "pairwise_diff_mean",
    )
    assert "profile: ui" in page
