"""The dashboard's static files: uPlot is the npm release VENDORED.md names, unchanged,
and no page loads anything from another site."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pushtrack.dashboard import app

STATIC = app.STATIC
TEMPLATES = Path(app.__file__).parent / "templates"


def test_uplot_is_the_pinned_npm_release_unchanged() -> None:
    notes = (STATIC / "VENDORED.md").read_text()
    (version,) = re.findall(r"npm package `uplot` (\d+\.\d+\.\d+)", notes)
    assert re.search(r"integrity\s+`sha512-[A-Za-z0-9+/=]{86,}`", notes)
    pinned = dict(re.findall(r"^\| `([^`]+)` \| `[^`]+` \| `([0-9a-f]{64})` \|$", notes, re.M))
    assert set(pinned) == {"uPlot.iife.min.js", "uPlot.min.css", "uPlot-LICENSE"}
    for name, digest in pinned.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    # the file says which release it is
    head = (STATIC / "uPlot.iife.min.js").read_text()[:200]
    assert f"(v{version})" in head
    # the page loads the vendored file, not a copy from elsewhere
    assert (
        '<script src="/static/uPlot.iife.min.js"></script>'
        in (TEMPLATES / "message.html").read_text()
    )


def test_no_page_or_script_loads_from_another_site() -> None:
    for path in [*TEMPLATES.iterdir(), *STATIC.glob("*.js"), *STATIC.glob("*.css")]:
        if path.name.startswith("uPlot"):
            continue  # the library's own text (its source URL in a comment)
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert not re.search(r"(fetch|EventSource|import)\s*\(\s*[\"'](https?:)?//", text)
        assert "@import" not in text, path.name
