"""The study's report.html as a browser shows it: Debian's headless Chromium at 1280 x 1100 px,
driven over the DevTools protocol (aiohttp's WebSocket client, already a dev dependency), with
every DNS name mapped to nowhere. Answer first (each site's served model and field summary in
the first 1,100 px), a table of contents whose anchors resolve, nothing wider than the
viewport, and no request that leaves the machine."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH, FIRST_SCREEN = 1280, 1100
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
         f"--window-size={WIDTH},{FIRST_SCREEN}", "--remote-debugging-port=0")
LOCAL_SCHEMES = ("data:", "about:", "file:")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=(
        "no Chromium at /usr/bin/chromium: `apt-get install -y chromium` (Debian's package) "
        "to check the report in a browser")),
]

# Measured in the page: the rows of the first two tables (each site at a glance, the field
# summary) with their bottom edge, the table of contents' links and whether each resolves,
# the page's and the widest element's width outside a sideways-scrolling box, the boxes.
MEASURE = """(() => {
  const bottom = el => el.getBoundingClientRect().bottom + window.scrollY;
  const rows = id => [...document.querySelectorAll(`#${id} ~ .wide table`)].slice(0, 1)
    .flatMap(t => [...t.querySelectorAll("tbody tr")])
    .map(tr => ({cells: [...tr.cells].map(c => c.textContent.trim()), bottom: bottom(tr)}));
  const links = [...document.querySelectorAll("nav a[href^='#']")].map(a => {
    const target = document.getElementById(decodeURIComponent(a.hash.slice(1)));
    return {href: a.getAttribute("href"), resolves: target !== null,
            y: target ? target.getBoundingClientRect().top + window.scrollY : null};
  });
  let widest = {right: 0, tag: ""};
  for (const el of document.body.querySelectorAll("*")) {
    if (el.parentElement.closest(".wide")) continue;  // inside a box that scrolls sideways
    const right = el.getBoundingClientRect().right;
    if (right > widest.right) widest = {right, tag: el.tagName + "." + el.className};
  }
  const boxes = [...document.querySelectorAll(".wide")].map(b => ({
    columns: b.querySelector("tr") ? b.querySelector("tr").cells.length : 0,
    client: b.clientWidth, scroll: b.scrollWidth, overflow: getComputedStyle(b).overflowX}));
  return {viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
          height: document.documentElement.scrollHeight, widest, boxes,
          glance: rows("each-site-at-a-glance"), field: rows("field-summary"),
          h2: [...document.querySelectorAll("h2[id]")].map(h => h.id), links,
          images: [...document.images].map(i => ({src: i.src.slice(0, 22),
                                                  width: i.getBoundingClientRect().width,
                                                  natural: i.naturalWidth}))};
})()"""


class DevTools:
    """The DevTools protocol over one page's WebSocket: commands and the events they cause."""

    def __init__(self, socket):
        self.socket, self.ids, self.events = socket, itertools.count(1), []

    async def send(self, method: str, **params):
        number = next(self.ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive()).data)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    async def wait_for(self, event: str, seconds: float = 60.0):
        async def first():
            while not any(e.get("method") == event for e in self.events):
                self.events.append(json.loads((await self.socket.receive()).data))
        await asyncio.wait_for(first(), seconds)


def _port(profile: Path, seconds: float = 30.0) -> int:
    """The DevTools port Chromium wrote to its profile (it picks a free one)."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        active = profile / "DevToolsActivePort"
        if active.exists() and active.read_text().strip():
            return int(active.read_text().split()[0])
        time.sleep(0.1)
    raise TimeoutError("Chromium wrote no DevToolsActivePort")


async def _render(page: Path, port: int) -> tuple[dict, list[str], bytes]:
    """(the page's measurements, every URL it requested, a screenshot of its first screen)."""
    import base64

    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            target = next(t for t in await answer.json() if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            tools = DevTools(socket)
            await tools.send("Network.enable")
            await tools.send("Page.enable")
            await tools.send("Emulation.setDeviceMetricsOverride", width=WIDTH,
                             height=FIRST_SCREEN, deviceScaleFactor=1, mobile=False)
            await tools.send("Page.navigate", url=page.resolve().as_uri())
            await tools.wait_for("Page.loadEventFired")
            result = await tools.send("Runtime.evaluate", expression=MEASURE,
                                      returnByValue=True)
            shot = await tools.send("Page.captureScreenshot", format="png")
    requests = [e["params"]["request"]["url"] for e in tools.events
                if e.get("method") == "Network.requestWillBeSent"]
    return result["result"]["value"], requests, base64.b64decode(shot["data"])


def render_in_chromium(page: Path, profile: Path) -> tuple[dict, list[str], bytes]:
    """Open ``page`` in a fresh headless Chromium (its profile in ``profile``)."""
    browser = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return asyncio.run(_render(page, _port(profile)))
    finally:
        browser.terminate()
        browser.wait(timeout=30)


@pytest.fixture(scope="module")
def rendered(study_project, tmp_path_factory):
    root, _ = study_project
    page = root / "data/08_reporting/report.html"
    start = time.perf_counter()
    measured, requests, shot = render_in_chromium(page, tmp_path_factory.mktemp("chromium"))
    seconds = time.perf_counter() - start
    winners = json.loads((root / "data/08_reporting/study_winners.json").read_text())
    print(json.dumps({"seconds": round(seconds, 1), **{k: measured[k] for k in (
        "viewport", "scrollWidth", "height", "widest", "boxes")},
        "glance": [(r["cells"][:2], r["bottom"]) for r in measured["glance"]],
        "field": [(r["cells"][:2], r["bottom"]) for r in measured["field"]]}, indent=1))
    return page, measured, requests, shot, winners


def test_each_sites_served_model_and_field_summary_are_in_the_first_screen(rendered):
    _, measured, _, shot, winners = rendered
    assert shot.startswith(b"\x89PNG")
    glance = {row["cells"][0]: row for row in measured["glance"]}
    field = {}
    for row in measured["field"]:
        field.setdefault(row["cells"][0], []).append(row)
    assert winners and set(glance) == set(winners) and set(field) == set(winners)
    for site, winner in winners.items():
        assert glance[site]["cells"][1] == winner["method"], site  # the served model
        assert glance[site]["bottom"] <= FIRST_SCREEN, (site, glance[site]["bottom"])
        assert "all" in [row["cells"][1] for row in field[site]]
        assert max(row["bottom"] for row in field[site]) <= FIRST_SCREEN, site


def test_the_table_of_contents_links_every_section_and_each_anchor_resolves(rendered):
    _, measured, _, _, _ = rendered
    links = measured["links"]
    assert len(links) >= 8
    assert [link["href"] for link in links if not link["resolves"]] == []
    assert {link["href"][1:] for link in links} == set(measured["h2"]) - {"contents"}
    ys = [link["y"] for link in links]
    assert ys == sorted(ys)  # in the order of the page
    order = [link["href"][1:] for link in links]
    assert order.index("field-summary") < order.index("instance-transfer-rs-local")
    assert order[-1] == "model-cards"  # the model cards last


def test_nothing_is_wider_than_the_viewport_and_wide_tables_scroll_in_their_box(rendered):
    _, measured, _, _, _ = rendered
    assert measured["scrollWidth"] <= measured["viewport"] == WIDTH
    assert measured["widest"]["right"] <= WIDTH, measured["widest"]
    widest_table = max(measured["boxes"], key=lambda box: box["columns"])
    assert widest_table["columns"] >= 15 and widest_table["overflow"] == "auto"
    figures = measured["images"]
    assert figures and all(i["src"].startswith("data:image/") for i in figures)
    assert all(i["width"] >= min(i["natural"], 500) for i in figures)  # legible, not squeezed


def test_no_request_leaves_the_machine(rendered):
    page, _, requests, _, _ = rendered
    assert requests[0] == page.resolve().as_uri()
    assert [url for url in requests if not url.startswith(LOCAL_SCHEMES)] == []
    assert [url for url in requests if url.startswith("file:")] == [requests[0]]
    # and nothing in the page could ask for one: every src and href is inline or an anchor,
    # or a link to a page written beside the report (followed only when clicked)
    from localsoc.pipelines.report.nodes import PAGES_BESIDE_REPORT

    text = page.read_text()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert [r for r in references if not r.startswith(("data:", "#"))
            and r not in PAGES_BESIDE_REPORT] == []
    assert not re.search(r"""src\s*=\s*["'](?:data_docs|pipeline)/""", text)
    assert not re.search(r"@import|url\(\s*['\"]?(?!data:)", text)
