# LocalSOC: the prediction service (default) and the study pipeline, in one image.
#   Build:          docker build -t localsoc .
#   Train (demo):   docker run --rm -v localsoc-data:/app/data -v localsoc-bento:/app/bentoml \
#                     localsoc localsoc run --env demo
#   Serve:          docker run --rm -p 3000:3000 -v localsoc-data:/app/data \
#                     -v localsoc-bento:/app/bentoml --env-file localsoc.env localsoc
# The service listens on 0.0.0.0:3000. Deployed, give it an API key: localsoc.env holds
# LOCALSOC_API_KEY=<at least 16 characters, e.g. `openssl rand -hex 32`>; every route but the
# health probes (/livez, /readyz, /healthz; the HEALTHCHECK below) then needs
# `Authorization: Bearer <key>` or `X-API-Key: <key>`, /metrics and /docs.json included.
# Without it nothing is asked. LOCALSOC_MAX_CONCURRENCY (default 128 requests in flight, beyond
# them 429), LOCALSOC_REQUEST_TIMEOUT_S (60, then 504) and LOCALSOC_BODY_TIMEOUT_S (30, then
# 408) bound the traffic; slow headers are not timed by the server (uvicorn has no header
# timeout), so clients that are not trusted reach it through a reverse proxy (see the README).
# The training run's package stage writes the bundle to the BentoML store (/app/bentoml) and its
# tag to data/06_models/bento_tag.txt, which the service reads at start.
# (No Docker engine runs on the development machines; this file is linted with hadolint.)

FROM python:3.11.7-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --no-install-recommends -y gcc g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml setup.py README.md ./
COPY native ./native
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-build-isolation --no-deps .

FROM python:3.11.7-slim-bookworm
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
COPY --chown=10001:10001 pyproject.toml dvc.yaml ./
COPY --chown=10001:10001 conf ./conf
COPY --chown=10001:10001 data ./data
RUN mkdir -p /app/bentoml && chown 10001:10001 /app/bentoml
USER 10001
VOLUME ["/app/data", "/app/bentoml"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4).status != 200)"]
# The service is the default command; any other command (e.g. `localsoc run --env demo`) runs it
# instead.
CMD ["bentoml", "serve", "localsoc.serving.service:LocalSOCService", "--host", "0.0.0.0", "--port", "3000"]
