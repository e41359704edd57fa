# hookbot as a container: `docker run -p 8080:8080 -v hookbot-state:/var/lib/hookbot -e GITHUB_TOKEN=... hookbot`
# BASE is the official image in production; `make test-container` passes a Debian base it makes itself, because no
# container registry is reachable where its CI runs.
ARG BASE=python:3.12-slim

# Stage 1: install hookbot into a virtual environment. pip, its caches and the build backend stay in this stage.
FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
# ".[fast]" is this project from the copied source plus its uvloop extra (hookbot serve uses uvloop when present);
# hadolint reads the extra as an unpinned package name. Last, pip removes itself and the setuptools that Python 3.11's
# venv adds (3.12's has none): the final image runs hookbot, it never installs anything.
# hadolint ignore=DL3013
RUN python3 -m venv /opt/hookbot \
    && /opt/hookbot/bin/pip install --no-cache-dir --disable-pip-version-check ".[fast]" \
    && /opt/hookbot/bin/python -m pip uninstall --yes --quiet pip setuptools

# Stage 2: the same base, the environment copied over (its interpreter links to the base's python) and a user.
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/hookbot/bin:$PATH \
    HOOKBOT_STATE_DIR=/var/lib/hookbot
COPY --from=build /opt/hookbot /opt/hookbot
# The state directory is the volume: owned by the user, 0700 (it holds the journal and a generated webhook secret).
RUN useradd --system --uid 10001 --home-dir /var/lib/hookbot --no-create-home hookbot \
    && install -d -m 0700 -o hookbot -g hookbot /var/lib/hookbot

USER 10001
# A hookbot.toml mounted here is found as ./hookbot.toml, as in earlier images.
WORKDIR /app
VOLUME ["/var/lib/hookbot"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["hookbot", "serve", "--host", "0.0.0.0", "--port", "8080"]
