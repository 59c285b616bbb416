# The production image: `docker build -t mailfix .`, then run it with the .env secrets and the config
# directory (mailfix.toml, the SSH key, known_hosts) mounted; see README, "Docker".
# Pinned to a full version; for a byte-exact base, add its digest:
#   docker buildx imagetools inspect python:3.11.12-slim-bookworm   (then FROM python:3.11.12-slim-bookworm@sha256:…)
FROM python:3.11.12-slim-bookworm

# The image's paths. `docker run --env-file .env` would override them, which is why .env.example
# leaves MAILFIX_CONFIG and MAILFIX_DATABASE_URL commented out.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MAILFIX_CONFIG=/config/mailfix.toml \
    MAILFIX_DATABASE_URL=sqlite:////data/mailfix.db \
    PORT=3000

WORKDIR /app
# Dependencies first, in a layer of their own (with PostgreSQL's driver, for compose.yaml): a change
# to the source does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
RUN pip install --no-deps . \
    && groupadd --system --gid 10001 mailfix \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home mailfix \
    && mkdir -p /data /config \
    && chown mailfix:mailfix /data

# Not root: the mounted SSH key must be readable by uid 10001 (chown 10001 config/id_ed25519).
USER 10001:10001
# The database (SQLite), and the config with the SSH key and known_hosts, live outside the image.
VOLUME ["/data", "/config"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=4)"
CMD ["mailfix", "serve"]
