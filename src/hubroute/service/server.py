"""Run the app with uvicorn; on SIGTERM or SIGINT the service drains first (readiness turns 503,
requests in flight finish, the update worker is stopped), then exits with status 0."""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import FastAPI


def serve(app: FastAPI, host: str, port: int, **uvicorn_options: Any) -> None:
    """Serve ``app`` on ``host:port`` until a signal stops it."""
    import uvicorn

    service = app.state.service
    log = logging.getLogger("hubroute.service")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hubroute: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not service.draining:
                log.info("signal %s: draining (not ready; finishing requests in flight)", sig)
            service.draining = True
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # a drained stop is a clean exit, not death by the signal

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options)
    DrainingServer(config).run()
    log.info("stopped")
