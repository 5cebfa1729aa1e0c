"""The served judge answers only the routes its users call; every other path is a 404.

vLLM's OpenAI server registers ~40 routes whatever the model can do (pooling, scoring, audio,
responses, a structured-decision API, render/derender, ...). Some answer 501 for a model that
lacks them (measured by schemathesis: `POST /v1/systemone`, "The model does not support the
structured decision API"), and each is attack surface the judge does not need. `AllowedRoutes`
is an ASGI middleware that vLLM loads with `--middleware unireward.serving.routes.AllowedRoutes`
(`serve.vllm_command`); it runs in vLLM's own venv, so this module imports the standard library
only. The allowed paths come from `UNIREWARD_SERVE_ROUTES` (comma-separated exact paths, set by
`serve.server_env` from `serve.routes`; the Deployment sets it too); `*` allows every route.
"""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "UNIREWARD_SERVE_ROUTES"
# What the reward client, the openai SDK, the Deployment's probes and a Prometheus scrape use.
DEFAULT_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/health",
    "/metrics",
    "/version",
    "/openapi.json",
)


def allowed_from_env(value: str | None) -> frozenset[str] | None:
    """The allowed paths from the variable's value; None = every route (`*`)."""
    if value is None:
        return frozenset(DEFAULT_ROUTES)
    paths = {p.strip() for p in value.split(",") if p.strip()}
    if "*" in paths:
        return None
    return frozenset(paths)


class AllowedRoutes:
    """ASGI middleware: HTTP requests to a path outside the allowed set get a JSON 404 in
    OpenAI's error shape, before vLLM (or its API-key check) sees them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.allowed = allowed_from_env(os.environ.get(ENV))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or self.allowed is None or path in self.allowed:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": {
                    "message": f"{path} is not served by this judge",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                }
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})
