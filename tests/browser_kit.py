"""What the browser tests share: Debian Chromium's arguments, the two screen sizes the issue
names, an axe-core check (the engine shipped inside `axe-playwright-python`, injected into the
page or frame, never fetched), horizontal-scroll and viewport checks, and screenshots.

Screenshots go to $UX_SHOTS when set (to look at them), else under the test's tmp dir.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}
SERIOUS = ("serious", "critical")
_AXE = Axe()


async def axe_problems(target: Any) -> list[str]:
    """Violations of serious or critical impact on a page or frame, one line each."""
    results = await _AXE.run(target)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in SERIOUS
    ]


async def horizontal_overflow(page: Any) -> int:
    """How many pixels the page is wider than its viewport (0: no horizontal scroll)."""
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


async def in_first_viewport(locator: Any, page: Any) -> bool:
    """The element is wholly inside the viewport (as the page first shows)."""
    box = await locator.bounding_box()
    size = page.viewport_size
    return bool(
        box and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] and box["x"] >= 0
    )


def shots_dir(tmp_path: Path) -> Path:
    """Where screenshots go."""
    folder = Path(os.environ.get("UX_SHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
