"""Render the web app's PNG icons from their SVG sources with Debian's Chromium (via Playwright).

Run from the repository root after changing an icon's SVG, then commit the PNGs:

    .venv/bin/python tools/render_icons.py

Why PNGs at all: the web-app manifest needs raster icons of 192 and 512 px for installability
(an SVG alone is not enough for every browser or launcher), iOS wants an opaque PNG
``apple-touch-icon``, and a notification badge must be a small monochrome PNG.

Sources (all in ``qwen_daemon/web/static``):
- ``icon.svg``: the app icon (rounded square, transparent corners) → ``icons/icon-192.png``,
  ``icons/icon-512.png`` (manifest, ``purpose: any``)
- ``icons/maskable.svg``: full-bleed background, the glyph inside the central 80 % safe zone that
  every launcher mask keeps → ``icons/maskable-512.png`` (``purpose: maskable``) and, opaque,
  ``icons/apple-touch-icon.png`` (180 px, iOS rounds it itself)
- ``icons/badge.svg``: the glyph alone, white on transparent → ``icons/badge-96.png`` (Android
  draws the notification badge from its alpha only)
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "qwen_daemon" / "web" / "static"
CHROMIUM = "/usr/bin/chromium"

#: (source SVG, output PNG, size in px)
ICONS = [
    ("icon.svg", "icons/icon-192.png", 192),
    ("icon.svg", "icons/icon-512.png", 512),
    ("icons/maskable.svg", "icons/maskable-512.png", 512),
    ("icons/maskable.svg", "icons/apple-touch-icon.png", 180),
    ("icons/badge.svg", "icons/badge-96.png", 96),
]


def main() -> int:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            for source, target, size in ICONS:
                data = base64.b64encode((STATIC / source).read_bytes()).decode()
                page = browser.new_page(viewport={"width": size, "height": size}, device_scale_factor=1)
                page.set_content(
                    "<!doctype html><style>html,body{margin:0;background:transparent}"
                    "img{display:block}</style>"
                    f'<img width="{size}" height="{size}" src="data:image/svg+xml;base64,{data}">'
                )
                page.wait_for_load_state("load")
                out = STATIC / target
                page.screenshot(
                    path=str(out),
                    omit_background=True,
                    clip={
                        "x": 0,
                        "y": 0,
                        "width": size,
                        "height": size,
                    },
                )
                page.close()
                print(f"{target}: {size}x{size} from {source}")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
