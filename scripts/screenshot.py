"""make screenshot: TensorBoard views of the README example, the demo and a small-batch Adam classifier as
PNGs under docs/.

Runs the README's first Python example as a new user would (in a scratch folder, so its logs land in
``lightning_logs/`` there), the demo (logs in ``runs/``) and ``examples/adam_classifier.py`` (logs in a
scratch folder), serves each log folder with TensorBoard on 127.0.0.1 (a free port), installs Debian's
``chromium`` when it is missing (apt-get; needs root), opens each dashboard view in headless Chromium and
saves ``docs/<readme|demo|classifier>_<view>.png``, then stops TensorBoard. ``--reuse`` keeps the demo's
existing ``runs/`` instead of running it again.

    .venv/bin/python scripts/screenshot.py [--out docs] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import re
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
    ("scalars", "#scalars&_smoothingWeight=0&tagFilter=" + urllib.parse.quote(KEY_TAGS, safe=""), 800),
    ("custom_scalars", "#custom_scalars&_smoothingWeight=0", 2600),
    ("text", "#text&tagFilter=" + urllib.parse.quote("landscape/(report|verdict)", safe=""), 1300),
    ("images", "#images", 1100),
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_logs(scratch: Path) -> Path:
    """Run the README's first ```python block in ``scratch``; its default logger writes lightning_logs/."""
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if code is None:
        sys.exit("README.md has no ```python block")
    (scratch / "example.py").write_text(code.group(1))
    print("running the README example", flush=True)
    subprocess.run([sys.executable, "example.py"], check=True, cwd=scratch)
    return scratch / "lightning_logs"


def demo_logs(logdir: Path, reuse: bool) -> Path:
    if not (reuse and logdir.is_dir() and any(logdir.rglob("events.out.tfevents.*"))):
        print("running the demo", flush=True)
        shutil.rmtree(logdir, ignore_errors=True)
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "demo.py"), "--runs", str(logdir)], check=True, cwd=ROOT
        )
    return logdir


def classifier_logs(scratch: Path) -> Path:
    print("running examples/adam_classifier.py", flush=True)
    example = ROOT / "examples" / "adam_classifier.py"
    subprocess.run([sys.executable, str(example), "--logdir", str(scratch)], check=True, cwd=ROOT)
    return scratch


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    print("installing Debian's chromium (apt-get)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update"], check=True)
    subprocess.run(
        sudo + ["apt-get", "install", "-y", "chromium"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
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


def screenshot(chromium: str, logdir: Path, out: Path, prefix: str) -> None:
    """Serve ``logdir`` with TensorBoard and save every view of VIEWS as ``out/<prefix>_<view>.png``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(base + "data/runs")
        for view, fragment, height in VIEWS:
            target = out / f"{prefix}_{view}.png"
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [
                        chromium,
                        *CHROMIUM_FLAGS,
                        f"--user-data-dir={profile}",
                        f"--window-size=1600,{height}",
                        f"--screenshot={target}",
                        base + fragment,
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=180,
                )
            print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--reuse", action="store_true", help="reuse the demo's runs/ if it has logs")
    args = parser.parse_args(argv)
    chromium = ensure_chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        screenshot(chromium, readme_logs(Path(scratch)), args.out, "readme")
    screenshot(chromium, demo_logs(ROOT / "runs", args.reuse), args.out, "demo")
    with tempfile.TemporaryDirectory() as scratch:
        screenshot(chromium, classifier_logs(Path(scratch)), args.out, "classifier")


if __name__ == "__main__":
    main()
