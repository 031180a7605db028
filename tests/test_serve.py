"""--mode=serve: the Gradio app over a briefly trained model answers `/translate` through
gradio_client with predict's outputs at the input's size, answers concurrent requests,
refuses bad uploads with a message while it keeps serving, and (in headless Chromium) takes
strokes on its canvas and shows a translation."""

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from gradio_client import Client, handle_file

from p2p_jax.data import images
from p2p_jax.serving import app as serve_app
from p2p_jax.serving import palettes, predict, restore
from tests.helpers import png_bomb

MAX_PIXELS = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(trained_tiny):
    """The shared tiny run: two serve examples, uploads over 0.2 Mpx refused."""
    config, workdir = trained_tiny
    assert config.dataset.max_image_pixels == MAX_PIXELS
    return config, workdir


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    config, workdir = trained
    config = config.copy_and_resolve_references()
    config.serve.max_upload_mb = 1
    restored = restore.restore(config, workdir)
    app = serve_app.build_app(restored, str(tmp_path_factory.mktemp("scratch")))
    port = free_port()
    serve_app.launch(app, config, "127.0.0.1", port)
    yield restored, f"http://127.0.0.1:{port}/"
    app.close()


def test_translate_api_gives_predicts_output_at_the_inputs_size(served, tmp_path):
    restored, url = served
    client = Client(url, verbose=False)
    rng = np.random.default_rng(0)
    for height, width in [(32, 32), (45, 70), (17, 23)]:
        path = tmp_path / f"in_{height}x{width}.png"
        images.write(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        served_path = client.predict(handle_file(str(path)), api_name="/translate")
        got = images.read(served_path)
        assert got.shape == (height, width, 3)
        predict.predict(restored, predict.list_inputs(str(path), str(tmp_path / "predicted")))
        np.testing.assert_array_equal(got, images.read(str(tmp_path / "predicted" / path.name)))


def test_concurrent_requests_are_all_answered(served, tmp_path):
    _, url = served
    path = tmp_path / "in.png"
    images.write(path, np.full((40, 30, 3), 128, np.uint8))

    def request(i):
        # Each client downloads into a folder of its own: equal outputs would share a path.
        client = Client(url, verbose=False, download_files=str(tmp_path / f"client_{i}"))
        return images.read(client.predict(handle_file(str(path)), api_name="/translate")).shape

    # Equal outputs at once: each must come back whole (none half-written by another).
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(request, range(8))) == [(40, 30, 3)] * 8


@pytest.mark.slow
def test_a_full_queue_turns_requests_away_and_the_server_keeps_answering(trained, tmp_path):
    """serve.queue_size bounds what waits: with one request translating (held for seconds)
    and one waiting, the others are told the queue is full at once, not held in memory."""
    config, workdir = trained
    config = config.copy_and_resolve_references()
    config.serve.concurrency, config.serve.queue_size, config.serve.num_examples = 1, 1, 0
    restored = restore.restore(config, workdir)

    class Held(serve_app.Requests):
        def translate(self, example):
            time.sleep(5)
            return super().translate(example)

    app = serve_app.build_app(restored, str(tmp_path), Held(restored))
    port = free_port()
    serve_app.launch(app, config, "127.0.0.1", port)
    try:
        path = tmp_path / "in.png"
        images.write(path, np.zeros((32, 32, 3), np.uint8))
        clients = [Client(f"http://127.0.0.1:{port}/", verbose=False,
                          download_files=str(tmp_path / f"client_{i}")) for i in range(5)]

        def request(client):
            try:
                return images.read(client.predict(handle_file(str(path)),
                                                  api_name="/translate")).shape
            except Exception as e:  # The client raises what the server answered.
                return str(e)

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            outcomes = list(pool.map(request, clients))
        answered = [o for o in outcomes if o == (32, 32, 3)]
        refused = [o for o in outcomes if o != (32, 32, 3)]
        assert answered and refused, outcomes
        assert all("Queue is full" in o for o in refused), outcomes
        assert images.read(clients[0].predict(handle_file(str(path)),
                                               api_name="/translate")).shape == (32, 32, 3)
    finally:
        app.close()


def test_bad_uploads_get_a_message_and_the_server_keeps_answering(served, tmp_path):
    _, url = served
    client = Client(url, verbose=False)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(2000, 2000))  # 4 Mpx against a limit of 0.2 Mpx.
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    large = tmp_path / "large.png"  # Over serve.max_upload_mb=1: refused before it is stored.
    large.write_bytes(images.encode(np.zeros((8, 8, 3), np.uint8)) + bytes(1_500_000))
    for bad, message in [(text, "not a readable image"), (bomb, "pixels"), (empty, "empty"),
                         (large, "exceeds")]:
        with pytest.raises(Exception) as raised:
            client.predict(handle_file(str(bad)), api_name="/translate")
        assert message in str(raised.value), str(raised.value)
    good = tmp_path / "good.png"
    images.write(good, np.zeros((32, 32, 3), np.uint8))
    assert images.read(client.predict(handle_file(str(good)), api_name="/translate")).shape == (
        32, 32, 3)


@pytest.mark.slow
def test_the_serve_command_answers_and_stops_cleanly_on_sigterm(trained, tmp_path):
    """As a user starts it: the URL answers after the warm-up, a bad upload is one line in the
    log (no traceback), and SIGTERM (twice, as `timeout` and a shell both send it) closes the
    server with exit status 0."""
    _, workdir = trained
    port = free_port()
    log = tmp_path / "serve.log"
    scratch = tmp_path / "tmp"  # The server's temporary folder: everything it stores.
    scratch.mkdir()
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "p2p_jax.main", f"--workdir={workdir}", "--mode=serve",
             f"--port={port}"], stdout=stderr, stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(scratch)})
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 600  # Start-up and compilation on a loaded machine.
        while True:
            assert server.poll() is None, log.read_text()
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(1)
        client = Client(url, verbose=False)
        text = tmp_path / "notes.png"
        text.write_text("not an image")
        with pytest.raises(Exception, match="not a readable image"):
            client.predict(handle_file(str(text)), api_name="/translate")
        good = tmp_path / "good.png"
        images.write(good, np.zeros((20, 36, 3), np.uint8))
        assert images.read(client.predict(handle_file(str(good)), api_name="/translate")).shape \
            == (20, 36, 3)
        # Uploads are kept in the server's own folder (not a shared /tmp/gradio) ...
        assert list(scratch.glob("p2p_jax_serve_*/uploads/**/good.png"))
        server.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=120) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
    printed = log.read_text()
    assert "request refused:" in printed and "stopping the server" in printed
    assert "Traceback" not in printed, printed
    # ... and removed with it when it stops (Gradio leaves only an empty folder it makes at
    # start-up, gradio/vibe_edit_history).
    assert not list(scratch.glob("p2p_jax_serve_*"))
    files = [str(p) for p in scratch.rglob("*") if p.is_file()]
    assert not files, files


def test_canvas_colours_snap_to_the_palette():
    scenes = palettes.SCENES
    sky, road = dict(scenes.classes)["sky"], dict(scenes.classes)["road"]
    canvas = np.zeros((2, 2, 4), np.uint8)
    canvas[0, 0] = (*road, 255)
    canvas[0, 1] = (road[0] + 9, road[1] - 7, road[2] + 5, 255)  # An anti-aliased edge.
    canvas[1, :] = (0, 0, 0, 0)  # Unpainted: the background (sky).
    snapped = palettes.canvas_to_input(canvas, scenes)
    assert [tuple(p) for p in snapped.reshape(-1, 3)] == [road, road, sky, sky]
    ids = palettes.canvas_to_input(np.array([[[*palettes.CITYSCAPES_IDS.classes[13][1], 255]]],
                                            np.uint8), palettes.CITYSCAPES_IDS)
    assert ids.shape == (1, 1, 1) and ids[0, 0, 0] == 26  # car: label id 26.
    pen = palettes.canvas_to_input(np.array([[[40, 40, 40], [230, 230, 230]]], np.uint8),
                                   palettes.EDGES)
    assert pen.tolist() == [[[0, 0, 0], [255, 255, 255]]]


CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.mark.skipif(not os.path.exists(CHROMEDRIVER),
                    reason="needs chromium and chromium-driver (.ci/run installs them)")
@pytest.mark.slow
def test_a_browser_draws_on_the_canvas_and_gets_a_photo(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    _, url = served
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        canvas = wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#canvas canvas")))
        swatches = driver.find_elements(By.CSS_SELECTOR, "#palette-legend > span")
        assert len(swatches) == len(palettes.SCENES.classes)
        actions = ActionChains(driver)
        for dy in (-20, 0, 20):  # Three strokes across the canvas.
            actions.move_to_element_with_offset(canvas, -60, dy).click_and_hold()
            actions.move_by_offset(120, 0).release()
        actions.perform()
        driver.find_element(By.CSS_SELECTOR, "#translate-drawing").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#output img"))
        wait.until(lambda d: "translated in" in d.find_element(By.ID, "latency").text)
        driver.save_screenshot(str(tmp_path / "serve.png"))
        assert (tmp_path / "serve.png").stat().st_size > 0
    finally:
        driver.quit()


def test_the_canvas_opens_on_an_eval_scene_at_the_models_size(trained, tmp_path):
    config, workdir = trained
    restored = restore.restore(config, workdir)
    scenes = serve_app._example_inputs(restored, 2)
    palette = palettes.for_config(config)
    height, width = config.dataset.image_size, config.dataset.image_size
    start = serve_app.canvas_start(scenes, palette, height, width)
    np.testing.assert_array_equal(start, images.resize_nearest(scenes[0], height, width))
    assert len(np.unique(start.reshape(-1, 3), axis=0)) > 1  # A scene, not a blank.
    blank = serve_app.canvas_start([], palette, height, width)
    assert blank.shape == (height, width, 3) and (blank == palette.background).all()
    app = serve_app.build_app(restored, str(tmp_path))
    canvas = next(block for block in app.blocks.values()
                  if getattr(block, "elem_id", None) == "canvas")
    np.testing.assert_array_equal(images.read(canvas.value["background"]["path"]), start)
