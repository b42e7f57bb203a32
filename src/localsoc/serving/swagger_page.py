"""The service's Swagger page (``GET /``): BentoML's page of its bundled Swagger UI
(``/static_content/``) reading ``/docs.json``, titled with this service's name and version (in
the tab, and on the page, where BentoML's stylesheet hides the title), without BentoML's Google
Tag Manager script and corner link, so that opening it sends nothing off the machine."""

from __future__ import annotations

import html

PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
    <style>
      /* BentoML's index.css shows only the version badges of the title: show the title too */
      .swagger-ui .info .main .title { visibility: visible; }
      .swagger-ui .info .main .title span { position: relative; }
    </style>
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32" media="(prefers-color-scheme: light)" />
    <link rel="icon" type="image/png" href="./static_content/favicon-dark-32x32.png" sizes="32x32" media="(prefers-color-scheme: dark)" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"> </script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"> </script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"> </script>
  </body>
</html>
"""


def swagger_page(title: str, version: str) -> bytes:
    """The page's HTML: ``title`` and ``version`` in the browser's tab (the page itself shows
    the OpenAPI document's own title, version and description)."""
    return PAGE.replace("{title}", html.escape(f"{title} {version}")).encode()
