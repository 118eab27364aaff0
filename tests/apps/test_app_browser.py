"""End to end in a real browser: `ragent app --with-default-kb` on the real model server, driven by headless
Chromium (Debian's /usr/bin/chromium through PyPI playwright; never `playwright install`).

The test asks the chat a question about the project, watches the answer stream in, checks its citation and opens
the source panel. Screenshots go to ``test-artifacts/browser/``; with ``RAGENT_UPDATE_SCREENSHOTS=1`` they are also
copied to ``docs/images/`` (the ones the guide shows).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOC_IMAGES = REPO / "docs" / "images"
QUESTION = "知识库支持哪些文件类型？"  # "Which file types can a knowledge base read?", answered by docs/guide/zh/faq.md
ANSWER_TIMEOUT_MS = 420_000  # a loaded 2-core CPU can take minutes per answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return bool(resp.read().decode().strip() == "ok")
    except OSError:
        return False


@pytest.fixture(scope="module")
def app_url(real_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ragent app --with-default-kb` in its own data home, on the real model server."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make system-deps`, or apt-get install chromium chromium-driver)")
    home = tmp_path_factory.mktemp("app-home")
    port = _free_port()
    log_path = ARTIFACTS / "app.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAGENT_HOME": str(home), "RAGENT_BASE_URL": real_server_url, "HF_HUB_OFFLINE": "1"}
    env.pop("RAGENT_CONFIG", None)
    env.pop("RAGENT_APP_KB", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apps.cli.main", "app", "--port", str(port), "--with-default-kb"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"`ragent app` exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"`ragent app` did not answer within 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        assert "ragent-docs" in log_path.read_text()  # the default knowledge base was built
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("RAGENT_UPDATE_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_IMAGES / name)
    return path


# Records every text a chat message shows while the streaming cursor is on, so the test can see partial answers.
_WATCH_STREAM = """() => {
  window.__partials = [];
  const seen = () => document.querySelectorAll('[data-testid="stChatMessage"]').forEach(m => {
    const t = m.innerText;
    if (t.includes('\u258c') && window.__partials[window.__partials.length - 1] !== t) window.__partials.push(t);
  });
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_chat_answers_from_the_guide_with_a_streamed_cited_answer(app_url: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Model server up").wait_for(timeout=60_000)
    page.get_by_text("ragent-docs", exact=False).first.wait_for(timeout=30_000)
    page.evaluate(_WATCH_STREAM)

    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=30_000)
    assert box.is_enabled()
    box.fill(QUESTION)
    box.press("Enter")

    # The answer streams in (partial texts with the cursor), then its source panels appear under it.
    cited_label = re.compile(r"\[\d+\] \S+\.md")
    sources = page.locator('[data-testid="stExpander"] summary').filter(has_text=cited_label)
    try:
        sources.first.wait_for(timeout=ANSWER_TIMEOUT_MS)
    except Exception:
        _shot(page, "failure.png")
        raise
    partials: list[str] = page.evaluate("window.__partials")
    assert partials, "no partial answer was shown while the answer was generated"

    messages = page.get_by_test_id("stChatMessage")
    assert messages.count() == 2
    assert QUESTION in messages.nth(0).inner_text()
    answer = messages.nth(1).locator('[data-testid="stMarkdownContainer"]').first.inner_text()
    assert "\u258c" not in answer  # streaming finished
    labels = [sources.nth(i).inner_text() for i in range(sources.count())]
    assert all(".md" in label for label in labels), labels  # panels name files of the guide
    _shot(page, "app-chat.png")

    # Open the first source panel: file, section, score and the passage itself.
    sources.first.click()
    panel = page.locator('[data-testid="stExpander"]').filter(has=page.locator("summary", has_text=cited_label)).first
    panel.get_by_text("File:").wait_for(timeout=10_000)
    panel.get_by_test_id("stCode").wait_for(timeout=10_000)
    page.wait_for_timeout(800)  # let the panel finish opening before the screenshot
    text = panel.inner_text()
    assert "docs/guide/" in text and ".md" in text
    assert "score" in text
    assert len(text) > 80  # the passage is shown
    _shot(page, "app-chat-source.png")
    page.close()
    # The answer cites the guide, and says something besides the citation markers.
    assert re.search(r"\[\d+\]", answer), f"the answer cites nothing: {answer!r}"
    assert re.sub(r"\[\d+\]|[\s.,;:，。]", "", answer), f"the answer is nothing but citation markers: {answer!r}"



def test_the_other_pages_load_and_say_what_to_do(app_url: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{app_url}/agent", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Agent runner").wait_for(timeout=60_000)
    page.get_by_text("Model server up").wait_for(timeout=30_000)
    page.get_by_text("Give the agent a task").wait_for(timeout=10_000)
    _shot(page, "app-agent.png")
    page.goto(f"{app_url}/evaluation", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Evaluation").wait_for(timeout=60_000)
    page.get_by_text("Start the run").wait_for(timeout=30_000)
    _shot(page, "app-evaluation.png")
    page.close()
