"""Request-level protection, in one ASGI layer (:class:`Guard`) around the whole application.

It sits outside Starlette's own error middleware, so every response gets the security
headers, the 401s, 413s and 500s included. In order, for each request:

1. **Token first.** A path under ``/api/v1`` other than ``/api/v1/health`` needs
   ``Authorization: Bearer <token>``; without a valid one the request is refused with 401
   before a single byte of its body is read, so no one without a token can make the server
   buffer or parse anything.
2. **Body limits.** The two upload endpoints (image and batch jobs, multipart) may send up to
   ``max_upload_mb``, counted while the body streams; every other request is capped at
   ``max_json_kb`` (64 KB by default), read in full here and refused with 413 beyond it, by
   its Content-Length or, for a chunked body, as it arrives.
3. **JSON that Python would accept but JSON does not.** ``NaN``, ``Infinity``, numbers that
   overflow to infinity, and nesting deeper than :data:`MAX_DEPTH` get a 422 before any
   endpoint runs, so a non-finite number is never stored.
4. **An audit row for every refusal** (any status >= 400 under ``/api/``): who (the token's
   name, or ``-``), the action, the status and the first words of the reason. Endpoints that
   write their own audit row mark the request so it is not written twice.

CORS is off: no ``Access-Control-Allow-*`` header is ever sent, so a page from another origin
cannot read the API's answers. :class:`RedactQuery` keeps query strings (a token pasted into
a URL) out of the access log.
"""

from __future__ import annotations

import json
import logging
import math

from starlette.concurrency import run_in_threadpool

SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
API = "/api/v1"
OPEN_PATHS = {f"{API}/health"}
MAX_DEPTH = 32          # JSON nesting accepted (a clinical record is one flat object)
MAX_ECHO = 200          # characters of a user's input quoted back in an error


def shorten(text, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: a 1 MB field is not echoed back."""
    s = str(text)
    return s if len(s) <= limit else f"{s[:limit]}... ({len(s)} characters)"


class JSONRefused(ValueError):
    """A JSON text that parses in Python but is not acceptable input."""


def _reject_constant(name: str):
    raise JSONRefused(f"{name} is not a number this server accepts: send a finite number, or leave the value out")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise JSONRefused(f"{shorten(text, 40)} overflows to infinity: send a finite number")
    return x


def _depth(obj, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping early past ``limit``."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def strict_json(text: str | bytes, *, max_depth: int = MAX_DEPTH):
    """``json.loads`` that refuses NaN, +-Infinity, overflowing numbers and deep nesting
    (:class:`JSONRefused`); a syntax error is ``json.JSONDecodeError`` as usual."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise JSONRefused(f"nested more than {max_depth} levels deep") from None
    if _depth(obj, max_depth) > max_depth:
        raise JSONRefused(f"nested more than {max_depth} levels deep")
    return obj


def finite(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _action(method: str, path: str) -> str:
    """A short name for the audit log: calculate, image_job, batch_job, job, models..."""
    parts = path[len(API):].strip("/").split("/") if path.startswith(API) else [path]
    if parts[0] == "models" and len(parts) >= 3:
        return {"jobs": "image_job", "batch": "batch_job"}.get(parts[2], parts[2])[:50]
    if parts[0] == "jobs" and len(parts) >= 3:
        return f"job_{parts[2]}"[:50]
    if parts[0] == "jobs":
        return "job_status"
    return (parts[0] or method.lower())[:50]


class _TooLarge(Exception):
    pass


class Guard:
    """The outermost ASGI layer: security headers, token check, body limits, strict JSON, audit.

    ``store``: :class:`gastrorad.serve.store.Store` (tokens, audit); ``upload_paths(path)``:
    whether ``path`` takes a multipart upload (the large limit).
    """

    def __init__(self, app, *, store, upload_limit: int, json_limit: int, upload_paths):
        self.app, self.store = app, store
        self.upload_limit, self.json_limit = int(upload_limit), int(json_limit)
        self.upload_paths = upload_paths
        self.log = logging.getLogger("gastrorad.serve")

    # ---- responses written here ------------------------------------------------------------
    @staticmethod
    async def _json(send, status: int, payload: dict, headers: list | None = None) -> None:
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, limit: int, length: int | None, upload: bool) -> dict:
        if upload:
            got = f"{length / 1e6:.1f} MB" if length is not None else "more than that"
            return {"detail": f"upload too large: {got}; the limit is {limit / 1e6:.0f} MB "
                              "(gastrorad serve --max-upload-mb)"}
        got = f"{length / 1e3:.0f} KB" if length is not None else "more than that"
        return {"detail": f"request body too large: {got}; a JSON request may hold at most {limit / 1e3:.0f} KB "
                          "(images go to the upload endpoints)"}

    async def _token_name(self, scope) -> str | None:
        raw = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = raw.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
            return None
        return await run_in_threadpool(self.store.token_name, token.strip())

    def _audit(self, who: str, scope, status: int, detail: str) -> None:
        try:
            self.store.audit(who or "-", _action(scope.get("method", ""), scope["path"]),
                             outcome=f"refused {status}: {shorten(detail, 150)}" if status < 500 else
                             f"error {status}: {shorten(detail, 150)}")
        except Exception:  # the audit must never turn a refusal into a crash
            self.log.exception("could not write the audit row of a refused request")

    # ---- the layer -------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        state = scope.setdefault("state", {})
        response = {"status": 0, "body": b""}

        async def guarded_send(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if path.startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
                response["status"] = message["status"]
            elif message["type"] == "http.response.body" and response["status"] >= 400 \
                    and len(response["body"]) < 400:
                response["body"] += message.get("body", b"")[:400]
            await send(message)

        who = None
        try:
            if path.startswith(API) and path not in OPEN_PATHS:
                who = await self._token_name(scope)
                if who is None:
                    return await self._json(guarded_send, 401, {
                        "detail": "a valid API token is required (Authorization: Bearer <token>; create one with "
                                  "`gastrorad serve --create-token NAME`)"}, [(b"www-authenticate", b"Bearer")])
                state["user"] = who
            upload = scope.get("method") == "POST" and self.upload_paths(path)
            limit = self.upload_limit if upload else self.json_limit
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                return await self._json(guarded_send, 413, self._too_large(limit, int(declared), upload))
            if upload:
                return await self._streamed(scope, receive, guarded_send, limit)
            body = await self._read_body(receive, limit)
            if body is None:
                return await self._json(guarded_send, 413, self._too_large(limit, None, False))
            ctype = dict(scope.get("headers", [])).get(b"content-type", b"").decode("latin-1").lower()
            if body and "json" in ctype:
                try:
                    strict_json(body)
                except JSONRefused as exc:
                    return await self._json(guarded_send, 422, {"detail": f"request body: {exc}"})
                except (ValueError, UnicodeDecodeError):
                    pass  # a syntax error: FastAPI answers 422 json_invalid with the position
            await self.app(scope, _replay(body, receive), guarded_send)
        except Exception:
            if response["status"] == 0:
                self.log.exception("request %s %s failed", scope.get("method"), path)
                await self._json(guarded_send, 500, {"detail": "internal error; see the server log"})
                return
            raise
        finally:
            if response["status"] >= 400 and path.startswith("/api/") and not state.get("audited"):
                detail = response["body"].decode("utf-8", "replace")
                try:
                    detail = str(json.loads(detail).get("detail", detail))
                except (ValueError, AttributeError):
                    pass
                await run_in_threadpool(self._audit, who, scope, response["status"], detail)

    async def _read_body(self, receive, limit: int) -> bytes | None:
        """The whole body of a non-upload request, or None past ``limit``."""
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _streamed(self, scope, receive, send, limit: int):
        """An upload: the body streams to the endpoint, counted; 413 once it passes ``limit``
        (whatever the inner layers, Starlette's 500 handler included, make of the interruption)."""
        seen, started, over = 0, False, False

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if over:
                return  # the answer to an oversized body is the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)
        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._json(send, 413, self._too_large(limit, None, True))


def _replay(body: bytes, receive):
    """A ``receive`` that gives ``body`` once, then waits on the real one (for the disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


class RedactQuery(logging.Filter):
    """Access-log filter: the query string of a logged URL is replaced by ``?<redacted>``, so a
    token someone put in a URL (``?token=...``) never reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?<redacted>", *args[3:])
        return True


def access_log_config() -> dict:
    """uvicorn's logging configuration with :class:`RedactQuery` on the access log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["redact_query"] = {"()": "gastrorad.serve.security.RedactQuery"}
    cfg["loggers"].setdefault("uvicorn.access", {})["filters"] = ["redact_query"]
    return cfg
