# hookbot as a container: `docker run -p 8080:8080 -e GITHUB_WEBHOOK_SECRET=... -e GITHUB_TOKEN=... hookbot`
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOOKBOT_STATE_DIR=/var/lib/hookbot

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
# ".[fast]" is this project from the copied source plus its uvloop extra (hookbot serve uses uvloop when present);
# hadolint reads the extra as an unpinned package name.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[fast]" \
    && useradd --system --uid 10001 --home-dir /var/lib/hookbot --create-home hookbot

USER 10001
VOLUME ["/var/lib/hookbot"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["hookbot", "serve", "--host", "0.0.0.0", "--port", "8080"]
