# LocalSOC: the study pipeline (and, once packaged, the prediction service) in one image.
# Build: docker build -t localsoc .     Run the demo study: docker run --rm localsoc
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
    TF_CPP_MIN_LOG_LEVEL=2 \
    LOCALSOC_PROJECT=/app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=10001:10001 pyproject.toml dvc.yaml ./
COPY --chown=10001:10001 conf ./conf
COPY --chown=10001:10001 data ./data
USER 10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import localsoc, localsoc._native.kennard_stone"]
CMD ["localsoc", "run", "--env", "demo"]
