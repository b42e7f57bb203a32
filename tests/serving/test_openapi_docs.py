"""The Swagger page (``/``, from ``/docs.json``): this service's title, version and description,
a summary and a working request example on every route, and nothing loaded from elsewhere."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_every_route_has_a_summary_and_a_request_example_that_works(client):
    from localsoc.serving.service import _version

    document = client.get("/docs.json").json()
    info = document["info"]
    assert info["title"] == "LocalSOC" and info["version"] == _version() != "None"
    assert "\n\n" not in info["description"] and "BentoML" not in info["description"]
    assert [tag["name"] for tag in document["tags"]] == ["Service APIs", "Infrastructure"]
    assert not any("BentoML" in tag["description"] for tag in document["tags"])
    for route in ("/predict", "/field", "/change", "/sites"):
        assert route in info["description"]
    operations = [(path, method, operation) for path, methods in document["paths"].items()
                  for method, operation in methods.items()]
    assert {path for path, _, _ in operations} >= {
        "/predict", "/field", "/change", "/sites", "/sites/{site}/card", "/livez", "/readyz",
        "/healthz", "/metrics"}
    for path, method, operation in operations:
        assert operation.get("summary"), (path, method)
        if method == "post":
            example = operation["requestBody"]["content"]["application/json"]["example"]
            response = client.post(path, json=example)
        else:
            line = operation["description"].split("Request example: `curl -s ")[1]
            url = line.split("`")[0]
            response = client.get(url.removeprefix("http://127.0.0.1:3000"))
        assert response.status_code == 200, (path, response.text[:300])


def test_the_change_example_is_a_paired_change_of_two_campaigns(client):
    document = client.get("/docs.json").json()
    post = document["paths"]["/change"]["post"]
    example = post["requestBody"]["content"]["application/json"]["example"]
    assert example["design"] == "paired" and set(example) >= {"baseline", "later"}
    answer = client.post("/change", json=example).json()
    assert answer["n_pairs"] == 2 and answer["summaries"][0]["stock"] is not None
    for status in ("400", "413", "415", "422"):
        assert post["responses"][status]["content"]["application/json"]["schema"][
            "$ref"].endswith("/ErrorResponse")


def test_the_swagger_page_and_docs_redirect(client):
    from localsoc.serving.service import _version

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"<title>LocalSOC {_version()}</title>" in page.text
    # Swagger UI from the server itself (BentoML's bundled copy), nothing from elsewhere
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page.text)
    assert "./static_content/swagger-ui-bundle.js" in references
    assert [r for r in references if not r.startswith("./static_content/")] == []
    assert "googletagmanager" not in page.text and "http" not in page.text
    for reference in references:
        assert client.get(reference.removeprefix(".")).status_code == 200, reference
    response = client.get("/docs", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/"
