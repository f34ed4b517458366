"""The release container in a real browser: Debian's headless Chromium, driven by Playwright.

The home page and the admin login must render with their stylesheets applied (computed
styles, and the colours in the screenshot's pixels), and those stylesheets must come from where
collectstatic put them: the stage bucket on moto's S3, read through the CDN (its stand-in,
tests/cdn.py). A screenshot of each page is kept in test-artifacts/ at the repository root.

Chromium is Debian's package (/usr/bin/chromium; .ci/run installs it). Playwright's own
browser download is never used: its pip wheel brings only the driver.
"""

import base64
import contextlib
import re
import struct
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.docker_rig import ROOT, put_s3_config, run_release, stage_config

pytestmark = pytest.mark.docker

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the rest stop Chromium's own calls home (sync, updates, QUIC
# probes), which only fail and fill the log on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
ARTIFACTS = ROOT / "test-artifacts"
SITE_CSS = ROOT / "www" / "static" / "www" / "site.css"
# Django admin's --header-bg, i.e. --secondary: #417690 (admin/css/base.css), light scheme.
ADMIN_HEADER_BG = "rgb(65, 118, 144)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HASHED_CSS = re.compile(r"/[^/]+\.[0-9a-f]{12}\.css$")


def hero_color():
    """The .hero colour as site.css declares it (the one owner of that fact)."""
    rule = re.search(r"\.hero\s*\{[^}]*?\bcolor:\s*(rgb\([^)]*\))", SITE_CSS.read_text())
    assert rule, f"no .hero colour in {SITE_CSS}"
    return rule.group(1)


@contextlib.contextmanager
def chromium(profile_dir):
    """A headless Chromium context with a fresh profile; closed on exit."""
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile_dir,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            color_scheme="light",  # the admin follows prefers-color-scheme
            # The CDN stand-in's certificate is self-signed (tests/cdn.py).
            ignore_https_errors=True,
        )
        try:
            yield context
        finally:
            context.close()


class LoadedPage:
    """One page loaded in the browser, with what the browser saw on the way."""

    def __init__(self, context, url):
        self.page = context.new_page()
        self.responses = {}
        self.problems = []
        self.page.on("response", lambda r: self.responses.setdefault(r.url, r))
        self.page.on("requestfailed", lambda r: self.problems.append(f"{r.url}: {r.failure}"))
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type == "error" else None
        )
        self.response = self.page.goto(url, wait_until="load", timeout=30_000)

    def stylesheets(self):
        """The absolute href of every <link rel=stylesheet>."""
        return self.page.eval_on_selector_all("link[rel=stylesheet]", "ls => ls.map(l => l.href)")

    def computed(self, selector, prop):
        return self.page.eval_on_selector(
            selector, "(e, prop) => getComputedStyle(e).getPropertyValue(prop)", prop
        )

    def screenshot(self, name):
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=path, full_page=True)
        return path


def assert_styles_from_bucket(loaded, static_url):
    """Every stylesheet came from the bucket's static/ prefix, served as text/css, under a
    content-hashed name that the CDN and the browser may keep for a year.

    Chromium refuses a cross-origin stylesheet of any other type (strict MIME checking), and
    quietly: Playwright reports no console error and the <link> keeps an empty sheet. So the
    content type is checked here, and the computed styles prove the rules were applied.
    """
    linked = loaded.stylesheets()
    assert linked, "no stylesheet linked"
    for href in linked:
        assert href.startswith(static_url), f"{href} is not under {static_url}"
        response = loaded.responses.get(href)
        assert response is not None, f"the browser never fetched {href}"
        assert response.status == 200, f"{href}: HTTP {response.status}"
        content_type = response.header_value("content-type") or ""
        assert content_type.split(";")[0].strip() == "text/css", f"{href}: {content_type!r}"
        # Its Cache-Control is the object's, which the CDN passes on (tests/cdn.py).
        assert HASHED_CSS.search(href), f"{href} is not a content-hashed name"
        cache_control = response.header_value("cache-control")
        assert cache_control == "public, max-age=31536000, immutable", (href, cache_control)


def png_colors(context, path):
    """(width, height, set of "r,g,b" colours) of a PNG, decoded by the browser itself."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    page = context.new_page()
    try:
        colors = page.evaluate(
            """async (src) => {
                const img = new Image();
                img.src = src;
                await img.decode();
                const canvas = document.createElement('canvas');
                canvas.width = img.width;
                canvas.height = img.height;
                const ctx = canvas.getContext('2d');
                ctx.drawImage(img, 0, 0);
                const px = ctx.getImageData(0, 0, img.width, img.height).data;
                const seen = new Set();
                for (let i = 0; i < px.length; i += 4) seen.add(`${px[i]},${px[i+1]},${px[i+2]}`);
                return Array.from(seen);
            }""",
            "data:image/png;base64," + base64.b64encode(data).decode(),
        )
    finally:
        page.close()
    return width, height, set(colors)


def assert_screenshot_shows(context, path, color):
    """A full-size PNG with real content (text, not one flat fill) and this CSS colour."""
    width, height, colors = png_colors(context, path)
    assert width == VIEWPORT["width"] and height >= VIEWPORT["height"], (path, width, height)
    assert len(colors) > 20, f"{path}: only {len(colors)} colours, the page looks blank"
    rgb = ",".join(re.findall(r"\d+", color))
    assert rgb in colors, f"{path}: no pixel in {color}"


def test_home_and_admin_login_render_with_css_from_s3(
    aws, postgres_server, docker_client, release_image, cdn_stand_in, tmp_path
):
    db = postgres_server.create_database(f"browser_{uuid.uuid4().hex[:12]}")
    uri = put_s3_config(stage_config(postgres_server, db, cdn_domain=cdn_stand_in.domain))
    static_url = f"https://{cdn_stand_in.domain}/static/"

    with (
        run_release(docker_client, release_image, config_uri=uri) as app,
        chromium(tmp_path / "profile") as browser,
    ):
        app.wait_healthy()

        health = LoadedPage(browser, app.url + "/health")
        assert health.response.status == 200
        assert health.response.json()["database"] == "ok"

        home = LoadedPage(browser, app.url + "/")
        assert home.response.status == 200
        assert home.page.inner_text(".hero") == "It works."
        assert_styles_from_bucket(home, static_url)
        assert home.computed(".hero", "color") == hero_color()
        assert home.problems == []
        shot = home.screenshot("browser-home.png")
        assert_screenshot_shows(browser, shot, hero_color())

        login = LoadedPage(browser, app.url + "/admin/login/")
        assert login.response.status == 200
        assert login.page.is_visible("input[name=username]")
        assert_styles_from_bucket(login, static_url)
        assert login.computed("#header", "background-color") == ADMIN_HEADER_BG
        assert login.problems == []
        shot = login.screenshot("browser-admin-login.png")
        assert_screenshot_shows(browser, shot, ADMIN_HEADER_BG)
