"""Where the `mailfix` command's settings come from: `.env` of the working directory, then the environment.

Precedence: a variable already set in the environment (exported, `docker run -e`/`--env-file`,
systemd) wins over the same variable in `.env`, which only fills in what is missing.
"""

from __future__ import annotations

from dotenv import find_dotenv, load_dotenv


def load_environment() -> str:
    """Read `.env` from the working directory (or its nearest parent) without overriding the environment.

    Return the file read, "" when there is none. Searching from the working directory, not from the
    installed package, is what makes a pipx or system install find the operator's `.env`.
    """
    path = find_dotenv(usecwd=True)
    if path:
        load_dotenv(path, override=False)
    return path
