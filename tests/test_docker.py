"""The image and compose.yaml follow the README: read as Docker reads them (no Docker daemon needed).

`docker run --env-file .env` puts every `KEY=VALUE` line of the file over the image's ENV, so a
.env copied from .env.example must leave the image's /config and /data paths alone.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dockerfile() -> list[tuple[str, str]]:
    """Return the Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env |= dict(word.split("=", 1) for word in shlex.split(args))
    return env


def env_file(path: Path) -> dict[str, str]:
    """What `docker run --env-file` sets: KEY=VALUE lines as they are; blank and # lines skipped."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_env_example_does_not_override_the_image_paths():
    env = image_env() | env_file(ROOT / ".env.example")
    assert env["MAILFIX_CONFIG"] == "/config/mailfix.toml"
    assert env["MAILFIX_DATABASE_URL"] == "sqlite:////data/mailfix.db"
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "MAILFIX_SECRET_KEY"} <= set(env)


def test_the_image_is_pinned_installs_dependencies_before_the_source_and_runs_as_a_user():
    steps = dockerfile()
    (base,) = [args for instruction, args in steps if instruction == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    order = [f"{instruction} {args}" for instruction, args in steps]
    deps = next(i for i, step in enumerate(order) if step.startswith("RUN") and "pip install -r" in step)
    assert "'postgres'" in order[deps]  # PostgreSQL's driver, for compose.yaml
    first_source = next(i for i, step in enumerate(order) if re.match(r"COPY (bot|handlers|storage)\b", step))
    assert order[:deps] == [o for o in order[:deps] if not re.match(r"COPY (bot|handlers|storage)\b", o)]
    assert deps < first_source
    assert [o for o in order[:deps] if o.startswith("COPY")] == ["COPY pyproject.toml ./"]
    user = [args for instruction, args in steps if instruction == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    last_run = max(i for i, (instruction, _) in enumerate(steps) if instruction == "RUN")
    assert max(i for i, (instruction, _) in enumerate(steps) if instruction == "USER") > last_run
    assert f"--uid {user[-1].split(':')[0]}" in order[last_run] and "chown mailfix:mailfix /data" in order[last_run]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (Go filepath.Match, `**` across dirs)."""
    excluded = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    ]
    for secret in (
        "keys/id_ed25519",
        ".env",
        "mailfix.toml",
        ".venv/bin/python",
        "mailfix.db",
        "mailfix.db-wal",
        ".git/HEAD",
        "config/known_hosts",
    ):
        assert ignored(secret, patterns), secret
    for needed in ("pyproject.toml", "README.md", "bot/terminal/cli.py", "handlers/serve.py", "storage/db.py"):
        assert not ignored(needed, patterns), needed


def test_compose_runs_the_bot_on_postgresql_once_it_is_healthy():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot, db = compose["services"]["mailfix"], compose["services"]["db"]
    assert bot["build"] == "." and bot["env_file"] == ".env"
    url = bot["environment"]["MAILFIX_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://mailfix:${POSTGRES_PASSWORD:?") and url.endswith("@db:5432/mailfix")
    assert "MAILFIX_CONFIG" not in bot["environment"]  # the image's /config/mailfix.toml
    assert "./config:/config:ro" in bot["volumes"]
    assert bot["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert re.fullmatch(r"postgres:\d+(\.\d+)?-bookworm", db["image"])
    assert db["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in db["volumes"])
