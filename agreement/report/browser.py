"""Render a report with headless Chromium: a screenshot, the DOM, and the page's console.

The flags keep Chromium off the network entirely (no background requests,
component updates, sync or QUIC) and in a fresh profile, so a rendering shows
only what the file itself contains. Console messages reach stderr through
``--enable-logging=stderr --v=0`` as lines tagged ``CONSOLE``.
"""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0")
_CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)$")


@dataclass
class Rendering:
    dom: str  # the DOM after load
    console: list  # messages the page wrote to its console (errors, CSP violations)
    stderr: str


def available() -> bool:
    return CHROMIUM.exists()


def console_messages(stderr: str) -> list[str]:
    return [m.group(1) for line in stderr.splitlines() if (m := _CONSOLE.search(line))]


def estimated_height(html_text: str, width: int) -> int:
    """Enough window height for the whole page: its figures at their pixel size
    (scaled down to the column where wider) plus text, headings and tables."""
    column = min(width, 1000) - 50
    heights = []
    for encoded in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text):
        w, h = struct.unpack(">II", base64.b64decode(encoded[:64])[16:24])  # the PNG IHDR chunk
        heights.append(h * min(1.0, column / w))
    rows = html_text.count("<tr>") + html_text.count("<p")
    # generous on purpose (captions wrap, tables grow): the blank rest is trimmed afterwards
    return int(1.25 * (800 + sum(heights) + 200 * len(heights) + 45 * rows))


def trim_bottom(png: Path, margin: int = 30) -> None:
    """Cut the blank window below the page's content."""
    from PIL import Image, ImageChops

    image = Image.open(png).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, (255, 255, 255))).getbbox()
    if box and box[3] + margin < image.height:
        image.crop((0, 0, image.width, box[3] + margin)).save(png)


def render_page(html: Path, screenshot: Path | None = None, width: int = 1100, height: int | None = None,
                timeout: float = 120.0) -> Rendering:
    """Load ``html`` (a file) in headless Chromium, dump its DOM, and write a
    ``width`` x ``height`` screenshot when asked (height None: the whole page,
    blank bottom trimmed)."""
    if not available():
        raise FileNotFoundError(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    url = Path(html).resolve().as_uri()
    whole_page = height is None
    if whole_page:
        height = estimated_height(Path(html).read_text(encoding="utf-8"), width)
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        args = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        args += ["--dump-dom"] + ([f"--screenshot={Path(screenshot).resolve()}"] if screenshot else [])
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout)
        shutil.rmtree(profile, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}:\n{done.stderr[-2000:]}")
    if screenshot and whole_page:
        trim_bottom(Path(screenshot))
    return Rendering(done.stdout, console_messages(done.stderr), done.stderr)
