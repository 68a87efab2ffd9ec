"""The pages as the server sends them (no browser needed): CSP, caching that never
serves a stale script, gzip, the JSON 404 elsewhere; and the strings tables: both
languages have every key, and no page text is written outside them."""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx

from server.pages import WEB_ROOT
from tests.realtime import running

JS = WEB_ROOT / "js"
KEY_LINE = re.compile(r'^\s*"([\w.]+)":\s*"(.*)",\s*$')


def table(lang: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for line in (JS / "i18n" / f"{lang}.js").read_text().splitlines():
        found = KEY_LINE.match(line)
        if found:
            assert found.group(1) not in keys, f"{lang}: {found.group(1)} twice"
            keys[found.group(1)] = found.group(2)
    return keys


class Markup(HTMLParser):
    """Text outside the strings tables, inline code or style, and the keys used."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.inline: list[str] = []
        self.keys: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}>")
            if name in ("data-i18n", "data-i18n-label", "data-i18n-placeholder",
                        "data-i18n-other") and value:
                self.keys.add(value)
        if tag == "script" and not dict(attrs).get("src"):
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def markup(name: str) -> Markup:
    parser = Markup()
    parser.feed((WEB_ROOT / name).read_text())
    return parser


def scripts() -> dict[str, str]:
    return {p.name: p.read_text() for p in JS.rglob("*.js")}


def test_both_languages_have_the_same_keys_and_no_empty_string() -> None:
    """Every string exists in Arabic and in English."""
    ar, en = table("ar"), table("en")
    assert len(ar) > 50
    assert sorted(ar) == sorted(en)
    assert [k for k, v in {**ar, **en}.items() if not v.strip()] == []
    # Arabic really is Arabic where it is not a language's own name.
    assert re.search("[\u0600-\u06ff]", ar["login.heading"])
    assert not re.search("[\u0600-\u06ff]", en["login.heading"])


def test_pages_hold_no_text_and_no_inline_code() -> None:
    """Markup carries keys only; its text comes from the tables, and the CSP can stay strict."""
    keys = set(table("en"))
    for name in ("patient.html", "display.html"):
        parsed = markup(name)
        assert parsed.text == [], f"{name}: hard-coded text {parsed.text}"
        assert parsed.inline == [], f"{name}: inline code or style {parsed.inline}"
        assert parsed.keys <= keys, f"{name}: unknown keys {parsed.keys - keys}"


def test_scripts_name_only_known_keys_and_never_write_html() -> None:
    """t("...") names a key of the tables; no innerHTML, no document.write, no eval."""
    keys = set(table("en"))
    used: set[str] = set()
    for name, source in scripts().items():
        if name in ("ar.js", "en.js"):
            continue
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)   # not the comments
        for forbidden in (r"\.(?:inner|outer)HTML\s*\+?=", r"insertAdjacentHTML\s*\(",
                          r"document\.write(?:ln)?\s*\(", r"\beval\s*\(", r"new Function\b"):
            assert not re.search(forbidden, code), f"{name} uses {forbidden}"
        assert not re.search("[\u0600-\u06ff]", source), f"{name} holds Arabic text"
        used |= set(re.findall(r'\bt\(\s*"([\w.]+)"', source))
    assert used, "no t() call found"
    assert used <= keys, used - keys
    # Keys built from the server's values.
    for status in ("WAITING", "CALLED", "IN_PROGRESS"):
        assert f"entry.{status}" in keys
    for state in ("done", "current", "open", "locked"):
        assert f"route.{state}" in keys
    exams = re.search(r"EXAM_TYPES = \[([^\]]*)\]", scripts()["patient.js"])
    assert exams is not None
    for exam in re.findall(r'"(\w+)"', exams.group(1)):
        assert f"exam.{exam}" in keys


def test_stylesheet_uses_logical_properties_only() -> None:
    """One sheet for right-to-left and left-to-right: no physical left or right."""
    css = (WEB_ROOT / "css" / "app.css").read_text()
    physical = re.findall(r"(?:margin|padding|border)-(?:left|right)|(?<![-\w])(?:left|right)\s*:"
                          r"|text-align:\s*(?:left|right)|float:", css)
    assert physical == []


async def test_pages_are_served_with_a_strict_policy_and_fresh_scripts(dsn: str) -> None:
    """HTML no-cache with a CSP of this origin; assets under the build, immutable, gzipped."""
    async with running(dsn) as live, httpx.AsyncClient(base_url=live.http_url) as client:
        page = await client.get("/", headers={"Accept-Encoding": "gzip"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-encoding"] == "gzip"
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        for rule in ("default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'",
                     "object-src 'none'", "require-trusted-types-for 'script'"):
            assert rule in csp
        assert "unsafe" not in csp
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert any(a.endswith("/js/patient.js") for a in assets)
        build = {a.split("/")[2] for a in assets}
        assert len(build) == 1 and "__BUILD__" not in page.text

        again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304

        script = await client.get(assets[-1] if assets[-1].endswith(".js") else
                                  next(a for a in assets if a.endswith(".js")),
                                  headers={"Accept-Encoding": "gzip"})
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "immutable" in script.headers["cache-control"]
        assert script.headers["content-encoding"] == "gzip"
        plain = await client.get(next(a for a in assets if a.endswith(".js")),
                                 headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert gzip.decompress(await _raw(client, next(a for a in assets if a.endswith(".js"))))\
            == plain.content

        display = await client.get("/display", params={"clinics": "eyes,ent", "name": "Hall"})
        assert display.status_code == 200 and "/js/display.js" in display.text

        # Another build's path, a file that is not there, a path outside the pages: JSON 404.
        stale = next(a for a in assets if a.endswith(".js")).replace(build.pop(), "0" * 12)
        for path in (stale, "/assets/x/js/none.js", "/nope", "/patient.html",
                     "/assets/" + "0" * 12 + "/../server/app.py"):
            missing = await client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"] == "not_found", path


async def _raw(client: httpx.AsyncClient, path: str) -> bytes:
    """The body as sent (gzip), before httpx decodes it."""
    async with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as response:
        return b"".join([chunk async for chunk in response.aiter_raw()])


# A reference that would load something from another origin (an XML namespace is not one).
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//"""
                      r"""|\bimport\b[^;]*["'](?:https?:)?//"""
                      r"""|fetch\(\s*["'`](?:https?:)?//|url\(\s*["']?(?:https?:)?//"""
                      r"""|@import\s+["']?(?:https?:)?//""")


def test_nothing_is_loaded_from_another_origin() -> None:
    """Nothing from a CDN and nothing that needs a build: plain files, referenced locally."""
    for path in Path(WEB_ROOT).rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            found = EXTERNAL.search(path.read_text())
            assert found is None, f"{path.name}: {found and found.group(0)}"
