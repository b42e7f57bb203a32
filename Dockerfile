# LocalSOC: the prediction service (the default target) and the trainer, from one Dockerfile.
#   Build:   docker build -t localsoc .                             (the service)
#            docker build --target trainer -t localsoc-trainer .    (dvc pull / repro / push)
#   Train:   docker run --rm -v localsoc-data:/app/data -v localsoc-bento:/app/bentoml \
#              localsoc-trainer                  (runs `dvc repro`; compose.yaml adds the remote)
#   Serve:   docker run --rm -p 3000:3000 -v localsoc-data:/app/data:ro \
#              -v localsoc-bento:/app/bentoml --env-file localsoc.env localsoc
#   Both:    docker compose up   (compose.yaml: S3-compatible store, trainer, service)
# Neither image holds data/ outputs or dev tools: the packages are requirements-runtime.lock
# (the runtime part of requirements.lock, see tools/runtime_lock.py) and .dockerignore keeps
# data/ out but for its git-tracked skeleton (empty folders, `localsoc import` .dvc files), which
# only the trainer carries, so that a fresh data volume starts as a fresh clone's data/.
# The service listens on 0.0.0.0:3000. Deployed, give it an API key: localsoc.env holds
# LOCALSOC_API_KEY=<at least 16 characters, e.g. `openssl rand -hex 32`>; every route but the
# health probes (/livez, /readyz, /healthz; the HEALTHCHECK below) then needs
# `Authorization: Bearer <key>` or `X-API-Key: <key>`, /metrics and /docs.json included.
# Without it nothing is asked. LOCALSOC_MAX_CONCURRENCY (default 128 requests in flight, beyond
# them 429), LOCALSOC_REQUEST_TIMEOUT_S (60, then 504), LOCALSOC_BODY_TIMEOUT_S (30, then 408)
# and LOCALSOC_HEADER_TIMEOUT_S (10, then 408) bound the traffic; clients that are not trusted
# reach it through a reverse proxy for TLS and per-client limits (see the README).
# The trainer's package stage writes the bundle to the BentoML store (/app/bentoml) and its tag
# to data/06_models/bento_tag.txt, which the service reads at start: both volumes go together.
# (No Docker engine runs on the development machines; this file is linted with hadolint and
# tests/serving/test_packaging_files.py checks it against compose.yaml and .dockerignore.)

FROM python:3.11.7-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --no-install-recommends -y gcc g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements-runtime.lock requirements.lock ./
# Cython compiles the kernels here only: it is pinned in requirements.lock, installed for the
# build and uninstalled before the virtualenv is copied on.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements-runtime.lock \
    && grep -E '^Cython==' requirements.lock > build-tools.lock \
    && /opt/venv/bin/pip install --no-cache-dir -r build-tools.lock
COPY pyproject.toml setup.py README.md ./
COPY native ./native
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-build-isolation --no-deps . \
    && /opt/venv/bin/pip uninstall --yes Cython

FROM python:3.11.7-slim-bookworm AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --no-install-recommends -y libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 localsoc
ENV PATH=/opt/venv/bin:$PATH \
    KEDRO_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1 \
    BENTOML_DO_NOT_TRACK=true \
    BENTOML_HOME=/app/bentoml \
    TF_CPP_MIN_LOG_LEVEL=2 \
    LOCALSOC_PROJECT=/app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# /app/bentoml/models: the model store (a volume, read-only in the service); the rest of the
# BentoML home (its metrics files) stays writable in the container
RUN mkdir -p /app/bentoml/models /app/data \
    && chown 10001:10001 /app /app/bentoml /app/bentoml/models /app/data

# The trainer: a DVC workspace without git (core.no_scm), laid out as a checkout: src/ and
# native/ are the stages' dependencies in dvc.yaml, and `kedro run` imports the package from
# src/ (Kedro puts it first on the path), so the kernels built above are placed beside it.
# `localsoc run` writes params.yaml from conf/ and runs `dvc repro` (the stages read params.yaml).
FROM runtime AS trainer
COPY --chown=10001:10001 pyproject.toml setup.py dvc.yaml dvc.lock* params.yaml .dvcignore ./
COPY --chown=10001:10001 .dvc ./.dvc
COPY --chown=10001:10001 conf ./conf
COPY --chown=10001:10001 src ./src
COPY --chown=10001:10001 native ./native
COPY --chown=10001:10001 data ./data
COPY --from=build --chown=10001:10001 /opt/venv/lib/python3.11/site-packages/localsoc/_native/*.so ./src/localsoc/_native/
USER 10001
RUN dvc config --local core.no_scm true && mkdir -p /app/.dvc/cache
VOLUME ["/app/data", "/app/bentoml/models"]
CMD ["localsoc", "run", "--env", "demo"]

# The service (last, so the default target): the installed package and nothing of data/.
FROM runtime AS serve
USER 10001
VOLUME ["/app/data", "/app/bentoml/models"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4).status != 200)"]
CMD ["bentoml", "serve", "localsoc.serving.service:LocalSOCService", "--host", "0.0.0.0", "--port", "3000"]
