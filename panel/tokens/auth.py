"""The ``/api`` bearer-token hook and the per-token rate limit.

``authenticate_api_token`` runs before each request. For ``/api/*`` and ``/metrics`` with an ``Authorization``
header it either sets ``g.principal`` to the token's principal or answers 401 itself: a bad token
never falls back to the session cookie. Requests without the header are left to the session login.
"""

from __future__ import annotations

import logging
import math
import time

import redis
from flask import Flask, current_app, g, jsonify, request

from panel.db import get_db
from panel.tokens.store import authenticate

log = logging.getLogger(__name__)

DEFAULT_RATE_LIMIT_PER_MINUTE = 600
WINDOW_SECONDS = 60
RATE_KEY = "pw:ratelimit:token:{id}:{window}"


def _unauthorized(message: str):
    response = jsonify(error=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="poolwarden", error="invalid_token"'
    return response


def authenticate_api_token():
    if not (request.path.startswith("/api/") or request.path == "/metrics"):
        return None
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return _unauthorized("send the API token as 'Authorization: Bearer <token>'")
    address = g.get("client_ip") or request.remote_addr
    principal, reason = authenticate(get_db(), credentials.strip(), address)
    if principal is None:
        log.info("API token refused from %s: %s", address, reason)
        return _unauthorized(reason)
    g.principal = principal
    return rate_limit(principal.id)


def _redis(app: Flask) -> redis.Redis | None:
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    client = app.extensions.get("poolwarden_token_rate_redis")
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        app.extensions["poolwarden_token_rate_redis"] = client
    return client


def rate_limit(token_id: int):
    """A fixed one-minute window per token in Redis; 429 with Retry-After when over the limit.

    If Redis cannot be reached the request goes through (the token was valid) and the failure is
    logged: an outage of the limiter should not take the API down with it.
    """
    limit = int(current_app.config.get("API_TOKEN_RATE_LIMIT") or DEFAULT_RATE_LIMIT_PER_MINUTE)
    client = _redis(current_app)
    if client is None:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = RATE_KEY.format(id=token_id, window=window)
    try:
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS * 2)
        count = pipe.execute()[0]
    except redis.RedisError as exc:
        log.warning("API token rate limit not applied, Redis unavailable: %s", exc)
        return None
    if count <= limit:
        return None
    retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    response = jsonify(error=f"rate limit exceeded: {limit} requests a minute per token; retry in {retry_after} s")
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response
