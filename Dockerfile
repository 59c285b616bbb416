# The production image: `docker build -t mailfix .`, then run it with the .env secrets, the
# config, the SSH key and known_hosts mounted (see README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MAILFIX_CONFIG=/config/mailfix.toml \
    MAILFIX_DATABASE_URL=sqlite:////data/mailfix.db \
    PORT=3000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data mailfix \
    && mkdir -p /data /config \
    && chown mailfix /data

USER mailfix
# The database, and the config with the SSH key and known_hosts, live outside the image.
VOLUME ["/data", "/config"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=4)"
CMD ["mailfix", "serve"]
