"""Runs runbook calls off Slack's listener threads, so a slow step never delays the next request's ack."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_sdk import WebClient

from handlers.replies import report_error


class Worker:
    """Runs runbook calls off the listener threads; what they raise goes to the one error reporter."""

    def __init__(self, client: WebClient, *, threads: int = 8) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mailfix-worker")

    def run(self, body: Mapping[str, Any], call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Call `call(*args, **kwargs)` in the background on behalf of the request `body`."""
        return self._pool.submit(self._guarded, body, call, args, kwargs)

    def _guarded(self, body: Mapping[str, Any], call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        try:
            return call(*args, **kwargs)
        except Exception as error:  # the background twin of @app.error: the user hears of it
            report_error(error, body, self.client)
            return None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
