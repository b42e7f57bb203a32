"""What uvicorn runs for the service after ``header_timeout.install``: our h11 protocol on
asyncio's event loop, even where httptools and uvloop are installed (kedro-viz brings them into
the dev virtualenv; the image has neither), so the dev server is the image's server."""

from __future__ import annotations

import asyncio
import importlib.util

import uvicorn
import uvicorn.config

from localsoc.serving import header_timeout
from localsoc.serving.header_timeout import HeaderTimeoutProtocol


async def app(scope, receive, send):  # never called: only the configuration is read
    raise AssertionError("not served")


def test_auto_means_h11_with_the_header_timeout_on_asyncio(monkeypatch):
    for name in ("auto", "h11"):
        monkeypatch.setitem(uvicorn.config.HTTP_PROTOCOLS, name,
                            uvicorn.config.HTTP_PROTOCOLS[name])
    monkeypatch.setitem(uvicorn.config.LOOP_FACTORIES, "auto",
                        uvicorn.config.LOOP_FACTORIES["auto"])
    monkeypatch.setattr(HeaderTimeoutProtocol, "header_timeout_s",
                        HeaderTimeoutProtocol.header_timeout_s)
    header_timeout.install(5.0)
    # as BentoML's worker builds it: neither http nor loop given
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    assert config.http_protocol_class is HeaderTimeoutProtocol
    loop = config.get_loop_factory()()
    try:
        assert type(loop).__module__.startswith("asyncio"), type(loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_the_dev_tools_do_bring_the_alternatives():
    """The choice above is made against something: kedro-viz (a dev dependency) installs
    httptools and uvloop, which uvicorn's "auto" would otherwise pick."""
    assert importlib.util.find_spec("kedro_viz") is not None
    assert importlib.util.find_spec("httptools") is not None
    assert importlib.util.find_spec("uvloop") is not None
