"""The generator outside Python: the JavaScript seed formula under Node's test runner, and the demo page in a real
headless Chromium against Python's generate. Skipped, with the reason, where node, Chromium, Playwright or
onnxruntime-web (npm ci in web/) is missing; .ci/run installs them all."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, call
from gankit_runtime import Generator

WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
HAS_ORT_WEB = (WEB / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.mjs").is_file()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_package_under_node_s_test_runner():
    r = subprocess.run(
        ["node", "--test", "test/"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GANKIT_PYTHON": sys.executable},
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and (not HAS_ORT_WEB or "# skipped 0" in r.stdout), r.stdout[-2000:]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The demo site of the shipped models, served on 127.0.0.1."""
    if not HAS_ORT_WEB:
        pytest.skip("onnxruntime-web is not installed (npm ci in web/)")
    out = tmp_path_factory.mktemp("site") / "site"
    assert call_cli("web", "--out", out) == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", out
    server.shutdown()


def call_cli(*args) -> int:
    import cli

    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def page(site):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.goto(site[0])
        page.wait_for_function("window.gankitDemo && window.gankitDemo.ready", timeout=120_000)
        yield page
        browser.close()


def in_browser(page, model: int, seeds: list[int], labels: list[int] | None = None) -> dict:
    return page.evaluate(
        """async ([model, seeds, labels]) => {
        const r = await window.gankitDemo.generateWith(model, seeds, labels);
        return {z: Array.from(new Uint32Array(r.z.buffer)), images: Array.from(r.images), pixels: Array.from(r.pixels)};
    }""",
        [model, seeds, labels],
    )


@pytest.mark.slow  # a real browser
@pytest.mark.parametrize("name", ["mnist-dcgan", "mnist-cdcgan", "fashion-cdcgan"])
def test_the_page_makes_python_s_images(page, site, name, capsys):
    models = page.evaluate("window.gankitDemo.models()")
    index = [m["name"] for m in models].index(name)
    g = Generator(ROOT / "exported" / f"{name}.onnx")
    if g.conditional:  # 8 seeds of every class
        seeds, labels = list(range(8)) * 10, [c for c in range(10) for _ in range(8)]
    else:
        seeds, labels = list(range(64)), None
    got = in_browser(page, index, seeds, labels)
    z = g.latents(seeds)
    assert np.array_equal(np.array(got["z"], np.uint32), z.view(np.uint32).ravel())  # latents: bit for bit
    images = g.run(z, labels)
    assert np.abs(np.array(got["images"], np.float32) - images.ravel()).max() <= 1e-5
    pixels = g.generate(seeds, labels=labels).astype(int).ravel()
    off = np.abs(np.array(got["pixels"]) - pixels)
    assert off.max() <= 1 and (off > 0).mean() <= 1e-3, (off.max(), (off > 0).mean())
    if index == 0:
        with capsys.disabled():
            print(
                f"\n[browser] page load to the first grid of 64 digits on screen: "
                f"{page.evaluate('window.gankitDemo.firstGridMs'):.0f} ms (headless Chromium, wasm, one thread)"
            )


@pytest.mark.slow  # a real browser
def test_a_model_that_fails_to_load_is_one_line_on_the_page(page, site):
    (Path(site[1]) / "models" / "mnist-cdcgan.onnx").write_bytes(b"not a model")
    page.reload()
    page.wait_for_function("window.gankitDemo && window.gankitDemo.ready", timeout=60_000)
    names = [m["name"] for m in page.evaluate("window.gankitDemo.models()")]
    page.select_option("#model", str(names.index("mnist-cdcgan")))
    page.wait_for_function("document.getElementById('status').className === 'error'", timeout=60_000)
    text = page.inner_text("#status")
    assert text.startswith("could not load models/mnist-cdcgan.onnx") and "\n" not in text


def test_cli_web_refuses_what_it_did_not_write_and_needs_onnxruntime_web(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    if HAS_ORT_WEB:
        rc, out = call(capsys, "web", "--out", tmp_path / "mine")
        assert rc == 1 and "no manifest of a gankit web build" in out.err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    rc, out = call(capsys, "web", tmp_path / "none.onnx", "--out", tmp_path / "s")
    assert rc == 1 and len(out.err.splitlines()) == 1 and not (tmp_path / "s").exists()
