"""Run the app with uvicorn; on SIGTERM or SIGINT the service drains first (readiness turns 503
while requests in flight finish), then stops."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def serve(app: FastAPI, host: str, port: int, **uvicorn_options: Any) -> None:
    """Serve ``app`` on ``host:port`` until a signal stops it."""
    import uvicorn

    service = app.state.service

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options)
    DrainingServer(config).run()
