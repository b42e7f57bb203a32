"""The LocalSOC prediction service (BentoML): SOC % of a site's spectra from its packaged winner.

``POST /predict`` takes ``{site, wavelengths_nm, reflectance | absorbance}`` and returns, per
spectrum, the SOC estimate, its prediction interval and the applicability-domain statistics,
with the identity of the model that made them. ``POST /field`` takes the same body plus,
optionally, one ``stratum``, ``bulk_density_g_cm3`` and ``depth_cm`` per spectrum and
``target`` (field | samples), and returns the field's (and each stratum's) mean SOC with an
interval that includes the model's error, and the SOC stock (``localsoc.field``; its errors are
those of /predict, plus 400 for a per-spectrum list of the wrong length and 422 for a bulk
density or depth out of range). ``POST /change`` takes two such campaigns (``baseline`` and
``later``, each with its own wavelengths and, to pair them, ``sample_id`` or ``lat``/``lon``)
and returns the change of the field's mean SOC and stock with its interval, minimum detectable
change and drift check (``localsoc.change``; ``localsoc.serving.change_answer`` says its
errors). ``GET /sites`` lists the served sites with their method,
wavelength grid and test metrics; ``GET /sites/{site}/card`` gives a site's model card
(``localsoc.serving.card``: data, method, metrics, intervals, domain, versions) as data and
markdown (404 for an unknown site).

The bundle is one model in the BentoML store (see ``localsoc.serving.bundle``); its tag is taken
from ``$LOCALSOC_BUNDLE_TAG``, else from ``data/06_models/bento_tag.txt`` (written by the package
stage; under ``$LOCALSOC_PROJECT`` or the working directory), else ``localsoc_bundle:latest``.
Every file's SHA-256 is checked before the models are loaded (against the digest the tag pins,
and ``$LOCALSOC_BUNDLE_SHA256`` when set: ``localsoc.serving.bundle``), once per worker and once,
in a child process, by the process that starts the server, before any worker: a bundle that
cannot be served (missing, changed or incomplete files, models that do not fit their sites)
stops ``bentoml serve`` at start-up with the reason and exit status 1. A worker that cannot load
it later (the bundle changed while serving, then a worker restarted) turns ``/readyz`` 503 on
every worker and stops the server with exit status 3, as does a server left with fewer live
workers than configured for ``$LOCALSOC_WORKER_GRACE_S`` (``localsoc.serving.supervision``).

Every request problem is answered with a 4xx and ``{"error": <what to fix>, "field": <name>}``:
400 for a malformed body (wrong JSON types, strictly: no number as a string, no ``true`` as a
number; a field given twice; empty or ragged arrays, reflectance and absorbance both or neither
given), 413 for too many spectra or too large a body, 415 for a body that is not
JSON, 422 for values the model cannot take (unknown site, NaN or infinite values, values out of
range or in the wrong units, a wavelength range that does not cover the model's grid or is
sampled coarser than it). A model that gives a non-finite estimate is answered with a 500 (never
as a success); a negative estimate is answered with the flag ``negative_estimate``; a bundle
whose models do not fit their sites or hold non-finite values is refused when the service starts.

Environment: ``LOCALSOC_WORKERS`` (worker processes, default: the cores, at most 4),
``LOCALSOC_ACCESS_LOG=1`` (a log line per request), ``LOCALSOC_THREADS`` (compute
threads per worker for TensorFlow and BLAS, default 1), ``LOCALSOC_CNN_BACKEND`` (auto, numpy
or tensorflow; see ``localsoc.serving.inference``), ``LOCALSOC_MAX_SPECTRA`` and
``LOCALSOC_MAX_BODY_BYTES`` (override the bundle's serving limits); the HTTP edges
(``LOCALSOC_API_KEY``, ``LOCALSOC_MAX_CONCURRENCY``, ``LOCALSOC_REQUEST_TIMEOUT_S``,
``LOCALSOC_BODY_TIMEOUT_S``, ``LOCALSOC_HEADER_TIMEOUT_S``) are described in
``localsoc.serving.edge``. Paths are matched
without a trailing slash (``/predict/`` is ``/predict``), so Starlette never answers with a
redirect built from the request's Host header; an unknown route (404) or method (405) is
answered ``{"error", "field"}`` too. ``GET /docs.json`` is the OpenAPI document, with request
examples on the served bundle's first site; ``GET /`` is its Swagger page (BentoML's bundled
Swagger UI, without BentoML's analytics script: ``localsoc.serving.swagger_page``), and
``GET /docs`` redirects there.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from localsoc.serving import header_timeout, supervision
from localsoc.serving.bundle import (
    DEFAULT_SERVING,
    BundleError,
    read_stored_bundle,
    with_store_times,
)
from localsoc.serving.change_answer import answer_change
from localsoc.serving.edge import OPEN_ROUTES, EdgeSettings, edge_settings, offers_key
from localsoc.serving.inference import configure_threads
from localsoc.serving.predictor import BundlePredictor, RequestError, check_body
from localsoc.serving.schemas import (
    CampaignScans,
    CardResponse,
    ChangeRequest,
    ChangeResponse,
    ErrorResponse,
    FieldRequest,
    FieldResponse,
    PredictRequest,
    PredictResponse,
    SitesResponse,
)
from localsoc.serving.swagger_page import swagger_page

logger = logging.getLogger(__name__)

TAG_FILE = Path("data/06_models/bento_tag.txt")
DEFAULT_TAG = "localsoc_bundle:latest"
PREDICT_ROUTE = "/predict"
FIELD_ROUTE = "/field"
CHANGE_ROUTE = "/change"
SITES_ROUTE = "/sites"
CARD_ROUTE = "/sites/{site}/card"
#: The POST routes whose JSON bodies the middleware checks, and the schema of each.
BODY_SCHEMAS = {PREDICT_ROUTE: PredictRequest, FIELD_ROUTE: FieldRequest,
                CHANGE_ROUTE: ChangeRequest}
OPENAPI_ROUTE = "/docs.json"
DOCS_ROUTE = "/docs"
#: The routes, as the 404 reply lists them.
ROUTES_TEXT = ("POST /predict, POST /field, POST /change, GET /sites, GET /sites/{site}/card, GET /docs.json "
               "(GET / shows it), GET /livez, /readyz, /metrics")
#: The error replies of /predict (all ``ErrorResponse``), as documented in /docs.json.
ERROR_STATUSES = {
    400: "malformed body: not JSON, wrong types (strict: no number as a string, no true as a "
         "number) or fields, a field given twice, empty or ragged arrays, reflectance and "
         "absorbance both or neither given",
    401: "no or wrong API key (only when the server has one: LOCALSOC_API_KEY); send "
         "Authorization: Bearer <key> or X-API-Key: <key>",
    408: "the body did not arrive in full within LOCALSOC_BODY_TIMEOUT_S (or the headers "
         "within LOCALSOC_HEADER_TIMEOUT_S: answered before routing, on any path)",
    413: "too many spectra or too large a body",
    415: "the body is not JSON (Content-Type)",
    422: "values the model cannot take: unknown site, NaN or infinite values, values out of "
         "range or in the wrong units, wavelengths that do not cover the model's grid or are "
         "sampled coarser than it",
    429: "more requests in flight than LOCALSOC_MAX_CONCURRENCY allows (BentoML's reply, "
         "without field): retry later",
    500: "the served model gave a non-finite estimate (the bundle is faulty), or another "
         "server error",
    504: "no answer within LOCALSOC_REQUEST_TIMEOUT_S (BentoML's reply, without field)",
}
#: The service's HTTP edges, read once per process (a bad value stops the server at start-up).
EDGES = edge_settings()
# uvicorn has no header timeout; the worker's server is created after this module is imported
header_timeout.install(EDGES.header_timeout_s)


def bundle_tag() -> str:
    """The tag of the bundle to serve (see the module notes)."""
    tag = os.environ.get("LOCALSOC_BUNDLE_TAG", "").strip()
    if tag:
        return tag
    bases = [Path(os.environ["LOCALSOC_PROJECT"])] if os.environ.get("LOCALSOC_PROJECT") else []
    for base in (*bases, Path.cwd()):
        path = base / TAG_FILE
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
    return DEFAULT_TAG


# --- GET /sites: a small Starlette app mounted next to the BentoML API -------------------------


async def sites_endpoint(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(service.sites_document())


async def card_endpoint(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    try:
        card = service.predictor.card(request.path_params["site"])
    except RequestError as error:
        return JSONResponse(error.body(), status_code=error.status)
    return JSONResponse(card.model_dump())


sites_app = Starlette(routes=[Route(SITES_ROUTE, sites_endpoint, methods=["GET"]),
                              Route(CARD_ROUTE, card_endpoint, methods=["GET"])])


# --- the OpenAPI document: BentoML's, with the replies this service really gives -------------

_openapi: dict[str, Any] = {}


def _component(schemas: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    """Add a pydantic model (and the models it uses) to the components; its reference."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _version() -> str:
    try:
        return importlib.metadata.version("localsoc")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def example_spectrum(predictor: BundlePredictor, site: str) -> np.ndarray:
    """A made-up reflectance spectrum on the site's grid that its model takes as in its domain
    when one of the candidates is: absorbance shaped like the domain's mean (preprocessed)
    spectrum, either way up, else a smooth ramp (answered, but flagged out of domain)."""
    served = predictor.sites[site]
    grid = served.wavelengths_nm
    ramp = np.linspace(0.12, 0.38, grid.size)
    mean = np.asarray(served.entry["domain"]["mean"], dtype=np.float64)
    candidates = [ramp]
    if mean.shape == grid.shape and np.ptp(mean) > 0:
        shape = (mean - mean.min()) / np.ptp(mean)
        candidates = [10.0 ** -(0.4 + 0.4 * shape), 10.0 ** -(0.8 - 0.4 * shape), ramp]
    for spectrum in candidates:
        spectrum = np.round(spectrum, 5)
        try:
            answer = predictor.answer(site, grid.tolist(), [spectrum.tolist()])
        except RequestError:
            continue
        if answer.predictions[0].in_domain:
            return spectrum
    return np.round(ramp, 5)


def served_examples(predictor: BundlePredictor) -> dict[str, dict[str, Any]]:
    """A request to /predict, /field and /change for the served bundle's first site, on its
    own wavelength grid, with made-up spectra (``example_spectrum``; the later campaign's
    tilted by a few per cent across the range)."""
    site = sorted(predictor.sites)[0]
    spectrum = example_spectrum(predictor, site)
    spectra = [spectrum.tolist(), np.round(spectrum * 0.95, 5).tolist()]
    grid = predictor.sites[site].wavelengths_nm.tolist()
    predict = {"site": site, "wavelengths_nm": grid, "reflectance": spectra[:1]}
    field = {**predict, "reflectance": spectra, "stratum": ["north", "south"],
             "bulk_density_g_cm3": [1.31, 1.27], "depth_cm": [30.0, 30.0]}
    tilt = np.linspace(0.99, 1.01, len(grid))
    campaign = {"wavelengths_nm": grid, "sample_id": ["p1", "p2"],
                "bulk_density_g_cm3": [1.31, 1.27], "depth_cm": [30.0, 30.0]}
    change = {"site": site, "design": "paired", "pair_by": "id",
              "baseline": {**campaign, "reflectance": spectra},
              "later": {**campaign, "reflectance": [
                  np.round(np.minimum(np.asarray(row) * factor, 1.0), 5).tolist()
                  for row, factor in ((spectra[0], tilt), (spectra[1], tilt[::-1]))]}}
    return {PREDICT_ROUTE: predict, FIELD_ROUTE: field, CHANGE_ROUTE: change}


#: The Swagger page's title and description (one paragraph).
TITLE = "LocalSOC"
DESCRIPTION = (
    "Soil organic carbon (SOC, % by mass) from the vis-NIR spectra of a served site, by the "
    "model the LocalSOC study chose for it (a spectral library localised to the site by "
    "transfer learning). POST /predict gives an estimate per spectrum with its prediction "
    "interval and applicability-domain check; POST /field the field's (and each stratum's) "
    "mean SOC and stock with an interval that includes the model's error; POST /change the "
    "change of that mean between a baseline and a later campaign, with its minimum "
    "detectable change and a check that the later spectra did not drift; GET /sites lists "
    "the served sites and GET /sites/{site}/card gives a site's model card. A request the "
    "service cannot answer gets a 4xx {\"error\", \"field\"} that says what to fix; "
    "/docs.json is this document.")
#: What the Swagger page says of BentoML's two route groups.
TAG_DESCRIPTIONS = {
    "Service APIs": "SOC estimates, field means and changes, the served sites and their cards",
    "Infrastructure": "Health probes and Prometheus metrics (no API key needed)",
}
#: A summary of every route on the Swagger page, and how to call the GET routes.
SUMMARIES = {
    (PREDICT_ROUTE, "post"): "SOC % per spectrum, with its interval and domain check",
    (FIELD_ROUTE, "post"): "A field's mean SOC and stock, per stratum, with the model's error",
    (CHANGE_ROUTE, "post"): "The change of a field's mean SOC and stock between two campaigns",
    (SITES_ROUTE, "get"): "The served sites with their method, wavelength grid and test metrics",
    (CARD_ROUTE, "get"): "The model card of a served site (from the bundle), as data and "
                         "markdown",
    ("/livez", "get"): "Liveness probe: 200 while the server runs (no API key needed)",
    ("/readyz", "get"): "Readiness probe: 200 while every worker serves the verified bundle, "
                        "else 503 (no API key needed)",
    ("/healthz", "get"): "Health probe, as /livez (no API key needed)",
    ("/metrics", "get"): "Prometheus metrics of the server (no API key needed)",
}


def _describe_routes(document: dict[str, Any], site: str | None) -> None:
    """Every route's summary, and a request example for each GET route (a curl line; the
    card's site parameter: ``site``)."""
    for (route, method), summary in SUMMARIES.items():
        operation = document["paths"].get(route, {}).get(method)
        if operation is None:
            continue
        operation["summary"] = summary
        if method == "get":
            path = route.replace("{site}", site or "SITE")
            operation["description"] = (
                (operation.get("description", "").strip() + "\n\n").lstrip()
                + f"Request example: `curl -s http://127.0.0.1:3000{path}`")
    if site is not None:
        document["paths"][CARD_ROUTE]["get"]["parameters"][0]["example"] = site


def _describe_service(document: dict[str, Any]) -> None:
    """This service's title, version, description, route group descriptions, route summaries
    and request examples in place of BentoML's."""
    document["info"] = {"title": TITLE, "version": _version(),
                        "description": DESCRIPTION}
    for tag in document.get("tags", []):
        tag["description"] = TAG_DESCRIPTIONS.get(tag["name"], tag.get("description", ""))
    service = bentoml.get_current_service()
    predictor = service.predictor if service is not None else None
    examples = served_examples(predictor) if predictor is not None else {}
    for route, example in examples.items():
        content = document["paths"][route]["post"]["requestBody"]["content"]
        content["application/json"]["example"] = example
        content["application/json"]["schema"].pop("example", None)
    _describe_routes(document, sorted(predictor.sites)[0] if predictor is not None else None)


def openapi_document() -> dict[str, Any]:
    """BentoML's OpenAPI document of the service with the POST routes' error replies (400, 413,
    415, 422, 500: ``ErrorResponse``, which BentoML does not know), GET /sites and GET
    /sites/{site}/card (a mounted app, which BentoML does not document), a summary of every
    route and a request example of each (``_describe_service``). Built once per worker."""
    if not _openapi:
        document = json.loads(json.dumps(LocalSOCService.openapi_spec.asdict()))
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        error = {"content": {"application/json": {"schema": _component(schemas, ErrorResponse)}}}
        predict = document["paths"][PREDICT_ROUTE]["post"]
        for route in BODY_SCHEMAS:
            post = document["paths"][route]["post"]
            post["responses"] = {
                "200": post["responses"]["200"],
                **{str(status): {"description": text, **error}
                   for status, text in ERROR_STATUSES.items()},
            }
        document["paths"][SITES_ROUTE] = {"get": {
            "tags": predict.get("tags", []),
            "responses": {"200": {"description": "Successful Response", "content": {
                "application/json": {"schema": _component(schemas, SitesResponse)}}}},
        }}
        document["paths"][CARD_ROUTE] = {"get": {
            "tags": predict.get("tags", []),
            "parameters": [{"name": "site", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "Successful Response", "content": {
                    "application/json": {"schema": _component(schemas, CardResponse)}}},
                "404": {"description": "unknown site", **error}},
        }}
        _describe_service(document)
        _openapi.update(document)
    return _openapi


# --- request limits: API key, body size, type and time, before BentoML reads the body ---------

#: The methods whose bodies the middleware reads (others are passed on unread).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Sent with a reply given before the request's body was read: the connection then ends
#: (``localsoc.serving.header_timeout`` closes it, lingering, whatever the reply).
CLOSE = (b"connection", b"close")
#: The Swagger page of /docs.json (``localsoc.serving.swagger_page``), where ``GET /docs``
#: sends a browser.
SWAGGER_ROUTE = "/"


def declares_body(headers: dict[bytes, bytes]) -> bool:
    """Whether request headers (lower-case names) announce a body."""
    length = headers.get(b"content-length", b"").strip()
    return (length.isdigit() and int(length) > 0) or b"transfer-encoding" in headers


def without_trailing_slash(scope: dict) -> dict:
    """The scope with its path matched without a trailing slash (Starlette's slash redirect
    would name the request's Host header)."""
    path = scope.get("path", "").rstrip("/") or "/"
    if path == scope.get("path"):
        return scope
    return {**scope, "path": path, "raw_path": (scope.get("raw_path") or b"").rstrip(b"/") or b"/"}


async def send_json(send, status: int, document: Any,
                    headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Send ``document`` as a whole JSON reply."""
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def json_errors(send, method: str, path: str):
    """``send`` with Starlette's plain-text 404 and 405 replaced by ``{"error", "field"}``."""
    held: list[dict] = []

    async def wrapped(message: dict) -> None:
        if (message["type"] == "http.response.start" and message["status"] in (404, 405)
                and b"json" not in dict(message.get("headers", [])).get(b"content-type", b"")):
            held.append(message)
            return
        if not held:
            await send(message)
            return
        if message.get("more_body", False):
            return
        status = held[0]["status"]
        allow = tuple((k, v) for k, v in held[0].get("headers", []) if k.lower() == b"allow")
        text = (f"no route {path[:80]!r}: the routes are {ROUTES_TEXT}" if status == 404 else
                f"{method[:20]} is not allowed on {path[:80]}; use "
                f"{b', '.join(v for _, v in allow).decode(errors='replace') or 'another method'}")
        await send_json(send, status, RequestError(status, None, text).body(), allow)

    return wrapped


class RequestLimits:
    """ASGI middleware: 401 without the API key (when the server has one), 408 for a body that
    does not arrive in time, 413 for bodies above the limit, 415 for non-JSON bodies to
    /predict and /field, 400 for bodies that do not fit their schema (strict JSON types, no
    field twice); 404 and 405 as ``{"error", "field"}``; paths lose their trailing slash. A
    reply given before the body was read says ``Connection: close``."""

    def __init__(self, app, max_body_bytes: int | None = None,
                 edges: EdgeSettings | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.edges = EDGES if edges is None else edges

    def _limit(self) -> int:
        if self.max_body_bytes:
            return int(self.max_body_bytes)
        try:
            return int(bentoml.get_current_service().limits["max_body_bytes"])
        except Exception:  # not instantiated yet
            return int(os.environ.get("LOCALSOC_MAX_BODY_BYTES")
                       or DEFAULT_SERVING["max_body_bytes"])

    @staticmethod
    async def _reply(send, problem: RequestError,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        await send_json(send, problem.status, problem.body(), headers)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = without_trailing_slash(scope)
        path, method = scope["path"], scope["method"]
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        close = (CLOSE,) if declares_body(headers) else ()
        key = self.edges.api_key
        if key is not None and path not in OPEN_ROUTES and not offers_key(headers, key):
            await self._reply(send, RequestError(
                401, "Authorization", "this server needs an API key: send Authorization: "
                "Bearer <key> or X-API-Key: <key>"), ((b"www-authenticate", b"Bearer"), *close))
            return
        if method == "GET" and path == OPENAPI_ROUTE:
            await send_json(send, 200, openapi_document(), close)
            return
        if method == "GET" and path == SWAGGER_ROUTE:
            page = swagger_page(TITLE, _version())
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                    (b"content-length", str(len(page)).encode()), *close]})
            await send({"type": "http.response.body", "body": page})
            return
        if method == "GET" and path == DOCS_ROUTE:
            await send({"type": "http.response.start", "status": 307,
                        "headers": [(b"location", SWAGGER_ROUTE.encode()),
                                    (b"content-length", b"0"), *close]})
            await send({"type": "http.response.body", "body": b""})
            return
        send = json_errors(send, method, path)
        if method not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        schema = BODY_SCHEMAS.get(path) if method == "POST" else None
        problem = self._header_problem(schema, headers)
        if problem is not None:
            await self._reply(send, problem, close)
            return
        body = await self._read_body(receive, send)
        if body is None:
            return
        if schema is not None and (problem := check_body(schema, body)) is not None:
            # checked here, not by BentoML: its replies and logs for a body that does not fit
            # the schema grow with the body (every bad value, with request data, at ERROR)
            await self._reply(send, problem)
            return
        await self.app(scope, _replay(body, receive), send)

    def _header_problem(self, schema: type[BaseModel] | None,
                        headers: dict[bytes, bytes]) -> RequestError | None:
        """The 415 (not JSON, to a route with a ``schema``) or 413 (declared size above the
        limit) that the headers alone give; None when they give none."""
        if schema is not None:
            media = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
            if media and media.lower() != b"application/json":
                return RequestError(415, None, f"the body is {media.decode(errors='replace')[:80]}"
                                    "; send JSON with Content-Type: application/json")
        limit = self._limit()
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            return RequestError(413, None, f"the body has {int(declared)} bytes; the limit is "
                                f"{limit}: send fewer spectra per call")
        return None

    async def _read_body(self, receive, send) -> bytes | None:
        """The whole body, or None once the client left or was answered 408 (not in within the
        body timeout) or 413 (above the limit)."""
        chunks, size, limit = [], 0, self._limit()
        timeout_s = self.edges.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                await self._reply(send, RequestError(
                    408, None, f"the body did not arrive in {timeout_s:g} s; send it at once"),
                    (CLOSE,))
                return None
            if message["type"] != "http.request":  # the client left
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._reply(send, RequestError(
                    413, None, f"the body exceeds the limit of {limit} bytes: send fewer "
                    "spectra per call"), (CLOSE,))
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that gives the body already read, then what ``receive`` gives."""
    queue = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


# --- the service ------------------------------------------------------------------------------


#: The served bundle (module level, so the deployment hook reads the same model as the workers).
BUNDLE_MODEL = bentoml.models.BentoModel(bundle_tag())


def load_predictor(bundle_model: Any) -> BundlePredictor:
    """The verified bundle of a ``bentoml.models.BentoModel``, ready to predict; a
    ``BundleError`` (``BundleIntegrityError`` for changed or missing files) or a
    ``RuntimeError`` (no such model in the store) says why it cannot be served."""
    stored = bundle_model.stored
    if stored is None:
        raise RuntimeError(
            f"the BentoML store has no bundle {str(bundle_model.tag)!r}; run the package stage "
            "(localsoc run --pipeline package) or point BENTOML_HOME / LOCALSOC_BUNDLE_TAG at one"
        )
    configure_threads(int(os.environ.get("LOCALSOC_THREADS", "1")))
    bundle = read_stored_bundle(stored)
    with_store_times(bundle.manifest, dict(stored.info.metadata or {}))
    return BundlePredictor(bundle, str(stored.tag))



CANNOT_SERVE = "localsoc: cannot serve:"
VERIFY_COMMAND = "from localsoc.serving.service import verify_served_bundle; verify_served_bundle()"


def verify_served_bundle() -> None:
    """Load the served bundle as a worker does; exit 1 with the reason when it cannot serve."""
    try:
        load_predictor(BUNDLE_MODEL)
    except (BundleError, RuntimeError) as error:
        raise SystemExit(f"{CANNOT_SERVE} {type(error).__name__}: {error}") from None


def _workers() -> int:
    return int(os.environ.get("LOCALSOC_WORKERS") or min(os.cpu_count() or 1, 4))


@bentoml.service(
    name="localsoc",
    workers=_workers(),
    # per server, shared out over the workers; beyond the cap BentoML answers 429 at once
    traffic=EDGES.traffic(),
    # one log line per request costs ~20 % of the single-spectrum throughput; opt in
    logging={"access": {"enabled": os.environ.get("LOCALSOC_ACCESS_LOG", "0") == "1"}},
    # OpenTelemetry spans cost ~0.5 ms a request even when none is sampled (BentoML's default);
    # LOCALSOC_TRACING=1 traces the API routes too (with a tracing exporter configured)
    tracing={"excluded_urls": "" if os.environ.get("LOCALSOC_TRACING", "0") == "1"
             else f"{PREDICT_ROUTE},{FIELD_ROUTE},{CHANGE_ROUTE},/sites"},
)
@bentoml.asgi_app(sites_app, path="/")
class LocalSOCService:
    """SOC % of a site's vis-NIR spectra, with prediction intervals and domain checks."""

    bundle_model = BUNDLE_MODEL

    @bentoml.on_deployment
    def check_bundle() -> None:
        """Once, in the process that starts the server and before any worker: a bundle that
        cannot be served (missing, tampered, incomplete, models that do not fit their sites)
        stops ``bentoml serve`` with the reason and a non-zero status. Without it, each worker
        would fail at start-up and be restarted while the server never got ready."""
        try:
            grace_s = supervision.grace_seconds()
        except ValueError as error:
            raise SystemExit(f"localsoc: cannot serve: {error}") from None
        # loaded in a child process: the models (TensorFlow) would stay in this process, which
        # only supervises the workers, for as long as the server runs
        done = subprocess.run([sys.executable, "-c", VERIFY_COMMAND], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["the bundle check failed"]
            reason = next((line for line in lines if line.startswith(CANNOT_SERVE)), lines[-1])
            raise SystemExit(reason)
        # from here a worker that cannot serve stops the server (localsoc.serving.supervision)
        supervision.start_watchdog(_workers(), grace_s)

    def __init__(self) -> None:
        try:
            self.predictor = load_predictor(type(self).bundle_model)
        except Exception as error:
            supervision.report_failure(f"{type(error).__name__}: {error}")
            raise
        self.limits = self.predictor.limits
        logger.info("serving bundle %s: sites %s", self.predictor.tag, sorted(self.predictor.sites))

    def __is_ready__(self) -> bool:
        """/readyz: 503 once a worker of this server has reported that it cannot serve."""
        return supervision.server_failure() is None

    def sites_document(self) -> dict[str, Any]:
        return self.predictor.sites_document()

    @bentoml.api(route=PREDICT_ROUTE, input_spec=PredictRequest)
    def predict(self, site: str, wavelengths_nm: list[float],
                reflectance: list[list[float]] | None = None,
                absorbance: list[list[float]] | None = None) -> PredictResponse:
        """SOC % per spectrum with its interval, domain check and the model's identity."""
        try:
            return self.predictor.answer(site, wavelengths_nm, reflectance, absorbance)
        except RequestError as error:
            return JSONResponse(error.body(), status_code=error.status)

    @bentoml.api(route=FIELD_ROUTE, input_spec=FieldRequest)
    def field(self, site: str, wavelengths_nm: list[float],
              reflectance: list[list[float]] | None = None,
              absorbance: list[list[float]] | None = None, stratum: list[str | None] | None = None,
              bulk_density_g_cm3: list[float | None] | None = None,
              depth_cm: list[float | None] | None = None, target: str = "field") -> FieldResponse:
        """The field's (and each stratum's) mean SOC with an interval that includes the model's
        error, and the SOC stock (``localsoc.field``)."""
        try:
            return self.predictor.field(site, wavelengths_nm, reflectance, absorbance, stratum,
                                        bulk_density_g_cm3, depth_cm, target)
        except RequestError as error:
            return JSONResponse(error.body(), status_code=error.status)

    @bentoml.api(route=CHANGE_ROUTE, input_spec=ChangeRequest)
    def change(self, site: str, baseline: CampaignScans, later: CampaignScans,
               design: str = "independent", pair_by: str = "id", target: str = "field",
               level: float = 0.9, alpha: float = 0.05, power: float = 0.8) -> ChangeResponse:
        """The change of the field's (and each stratum's) mean SOC and stock between two
        campaigns, with an interval that includes the model's error, the minimum detectable
        change and the spectral drift check (``localsoc.change``)."""
        try:
            request = ChangeRequest(site=site, baseline=CampaignScans.model_validate(baseline),
                                    later=CampaignScans.model_validate(later), design=design,
                                    pair_by=pair_by, target=target, level=level, alpha=alpha,
                                    power=power)
            return answer_change(self.predictor, request)
        except RequestError as error:
            return JSONResponse(error.body(), status_code=error.status)


LocalSOCService.add_asgi_middleware(RequestLimits)
