"""docs/serve.png: the app serving a trained run, its canvas opened on an eval-split scene and
translated, as a new user first sees it.

  .venv/bin/python scripts/serve_screenshot.py --workdir=workdirs/default --output=docs/serve.png

Starts `--mode=serve` on a free port, opens the page in headless Chromium (Selenium, with
Debian's chromium-driver), clicks "Translate drawing", waits for the output and saves the
window; the server is stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{url} did not answer in {seconds:.0f} s")


def screenshot(url: str, output: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
        options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#canvas canvas")))
        time.sleep(2.0)  # The canvas draws its background after the element appears.
        driver.find_element(By.CSS_SELECTOR, "#translate-drawing").click()
        wait.until(lambda d: "translated in" in d.find_element(By.ID, "latency").text)
        driver.execute_script("window.scrollTo(0, 0)")  # The click scrolled to the button.
        time.sleep(1.0)
        driver.save_screenshot(output)
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--output", default="docs/serve.png")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "p2p_jax.main", f"--workdir={args.workdir}",
                               "--mode=serve", f"--port={port}"])
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url, server, 300)
        screenshot(url, args.output)
        print(f"wrote {args.output}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
