"""The Swagger page's HTML (``localsoc.serving.swagger_page``) without a server: titled, its
title shown, everything it loads from the service itself."""

from __future__ import annotations

import re

from localsoc.serving.swagger_page import swagger_page


def test_the_page_is_titled_and_loads_only_from_the_service():
    page = swagger_page("LocalSOC", "0.1.0 <dev>").decode()
    assert "<title>LocalSOC 0.1.0 &lt;dev&gt;</title>" in page
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert len(references) == 7
    assert all(reference.startswith("./static_content/") for reference in references)
    assert "http" not in page and "googletagmanager" not in page
    assert ".title { visibility: visible; }" in page  # BentoML's stylesheet hides it
