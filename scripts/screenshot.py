"""make screenshot: TensorBoard views of the demo's logs as PNGs under docs/.

Runs the demo when runs/ holds no event file, serves runs/ with TensorBoard on 127.0.0.1 (a free port),
installs Debian's ``chromium`` when it is missing (apt-get; needs root), opens each dashboard view in
headless Chromium and saves a PNG per view, then stops TensorBoard.

    .venv/bin/python scripts/screenshot.py [--logdir runs] [--out docs]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (file name, dashboard fragment, window height): TensorBoard is a single-page app addressed by fragment.
# Smoothing off (_smoothingWeight=0): TensorBoard's default 0.6 would blend the eigenvalues of consecutive steps.
KEY_TAGS = r"landscape/(hessian/lambda_m..|convexity/pl_ratio|redundancy/effective_width)$"
VIEWS = (
    ("tensorboard_scalars.png", "#scalars&_smoothingWeight=0&tagFilter=" + urllib.parse.quote(KEY_TAGS, safe=""), 800),
    ("tensorboard_custom_scalars.png", "#custom_scalars&_smoothingWeight=0", 3400),
    ("tensorboard_text.png", "#text&tagFilter=" + urllib.parse.quote("landscape/report", safe=""), 1300),
    ("tensorboard_images.png", "#images", 1100),
)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=15000",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_logs(logdir: Path) -> None:
    if logdir.is_dir() and any(logdir.rglob("events.out.tfevents.*")):
        return
    print(f"{logdir}/ has no TensorBoard logs: running the demo first", flush=True)
    subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--runs", str(logdir)], check=True, cwd=ROOT)


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    print("installing Debian's chromium (apt-get)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update"], check=True)
    subprocess.run(sudo + ["apt-get", "install", "-y", "chromium"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("chromium")
    if not found:
        sys.exit("chromium is still not on PATH after apt-get install")
    return found


def wait_for(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and response.read().strip() not in (b"", b"[]", b"{}"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"TensorBoard did not answer {url} within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", type=Path, default=ROOT / "runs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    ensure_logs(args.logdir)
    chromium = ensure_chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(args.logdir), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(base + "data/runs")
        for name, fragment, height in VIEWS:
            target = args.out / name
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size=1600,{height}",
                     f"--screenshot={target}", base + fragment],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180,
                )
            print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
