"""inv docs: the docs site built strict and served, read by a browser that reaches no other host."""

import re
import shutil
import signal
import subprocess
import urllib.request

import pytest
from project_copy import TIMEOUT, fetch_when_up, free_port, local_inv, module_copy, start_inv

project = module_copy("docs_site")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_warning_fails_the_build(project):
    page = project / "docs" / "layout.md"
    original = page.read_text()
    page.write_text(original + "\n[a page that is not there](nowhere.md)\n")
    try:
        built = local_inv(project, "docs", "--no-serve")
    finally:
        page.write_text(original)
    assert built.returncode == 1
    assert "nowhere.md" in built.stderr and "the docs have warnings" in built.stderr


@pytest.mark.skipif(not BROWSER, reason="no headless browser here: apt-get install chromium")
def test_inv_docs_serves_the_site_and_its_diagrams_render_offline(project, tmp_path):
    port = free_port()
    run = start_inv(project, "local", "docs", "--port", str(port))
    site = f"http://127.0.0.1:{port}"
    try:
        index = fetch_when_up(f"{site}/", lambda: run.poll() is None)
        assert index is not None and b"Flask + PostgreSQL, driven by invoke" in index
        html = urllib.request.urlopen(f"{site}/deployment.html").read().decode()
        assert not re.findall(r'(?:src|href)="(?:https?:)?//[^"]*\.(?:js|css|woff2?)"', html)
        dom = subprocess.run(
            [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--virtual-time-budget=10000", "--dump-dom", f"{site}/deployment.html"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=TIMEOUT)
    assert '<g id="graph0" class="graph"' in dom  # Graphviz's drawing, in the page
    assert "digraph stack" not in dom  # not its source, the fallback of a diagram not drawn
    assert "the one published port" in dom
