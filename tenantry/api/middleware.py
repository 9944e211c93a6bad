"""What surrounds every answer of the REST API: a rate limit per API key with its RateLimit-*
headers, POSTs made safe to retry by an Idempotency-Key (as Stripe's), and, for the whole site,
an X-Request-Id that the log lines written while answering carry too, and a 400 for text that
holds a NUL character.

Logging's configuration loads this module (for RequestIdFilter) before Django's apps are
ready, so the models are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypedDict

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase

GetResponse = Callable[[HttpRequest], HttpResponseBase]


def is_api(request: HttpRequest) -> bool:
    # A database's own host has no API: the gateway gives it the workspace's URLs.
    return request.path_info.startswith("/api/v1/") and getattr(request, "urlconf", None) is None


def bearer_token(request: HttpRequest) -> str | None:
    """The API key a request sends, unchecked, read as ninja's HttpBearer reads it."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def problem(detail: str, code: str, status: int) -> JsonResponse:
    """An error answer in the API's shape, for the answers given before any operation runs."""
    return JsonResponse(
        {"detail": detail, "code": code},
        status=status,
        content_type="application/json; charset=utf-8",
    )


# Request ids

# A client's own id is kept only when it is a plain token: anything else could forge or break
# log lines.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
_request_id: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Gives each log record the id of the request being answered ("-" outside requests), for
    the `request_id=` of the log format (settings.LOGGING)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class RequestIdMiddleware:
    """An X-Request-Id on every answer of the site: the client's own when it sent a sane one,
    else a new one."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        sent = request.headers.get("X-Request-Id", "")
        request_id = sent if CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        # Not reset on the way out: Django logs a 4xx or 5xx after the middleware has
        # answered. request_finished clears it once the answer is sent.
        _request_id.set(request_id)
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


def _forget_request_id(**kwargs: Any) -> None:
    _request_id.set("-")


request_finished.connect(_forget_request_id, dispatch_uid="tenantry.api.request_id")


# Rate limits

WINDOW = 60  # seconds: settings.API_RATE_LIMIT is a number of requests a minute


def _authenticated(request: HttpRequest) -> bool:
    from tenantry.accounts.models import ApiKey

    return isinstance(getattr(request, "auth", None), ApiKey)


class RateLimitMiddleware:
    """At most settings.API_RATE_LIMIT requests a minute for each API key (a fixed window on
    the clock's minutes), said in the RateLimit-* headers (IETF draft) of every answer to a
    request that sends a key; past the limit, a 429 with Retry-After."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        token = bearer_token(request)
        if token is None or not is_api(request):
            return self.get_response(request)
        from tenantry.accounts.models import hash_key

        limit: int = settings.API_RATE_LIMIT
        now = time.time()
        window = int(now // WINDOW)
        reset = math.ceil((window + 1) * WINDOW - now)
        counter = f"api-rate:{hash_key(token)}:{window}"
        # Counted without looking the key up: once its count exists, a request adds to it at
        # once (atomic in Redis; in the database cache two at the same instant may count as
        # one). The count is started only after a request the key authenticated, so that
        # made-up keys leave nothing in the cache, which keeps every live entry.
        try:
            used = cache.incr(counter)
        except ValueError:
            used = 0
        if used > limit:
            response: HttpResponseBase = problem(
                f"Too many requests with this API key: {limit} a minute at most. "
                f"Try again in {reset} seconds.",
                "rate_limited",
                429,
            )
            response["Retry-After"] = str(reset)
        else:
            response = self.get_response(request)
            if not used and _authenticated(request):
                used = 1 if cache.add(counter, 1, WINDOW) else cache.incr(counter)
        response["RateLimit-Limit"] = str(limit)
        response["RateLimit-Remaining"] = str(max(0, limit - used))
        response["RateLimit-Reset"] = str(reset)
        return response


# Idempotency keys

KEPT_SECONDS = 24 * 60 * 60
# How long a first request holds its key against retries (409) if its process dies while
# answering; a live one lets go as soon as it has answered.
RUNNING_SECONDS = 5 * 60
KEPT_HEADERS = ("Content-Type", "Location", "Retry-After")
# What reading a body can raise: answered by the API's own handlers, as in an operation.
BODY_ERRORS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent, MultiPartParserError)


class Kept(TypedDict):
    fingerprint: str
    status: int
    content: bytes
    headers: dict[str, str]


def fingerprint(request: HttpRequest) -> str:
    """What makes two requests the same one: method, path and query, and body. An upload is
    hashed from the parsed form, which the operation reads next, and its files as they lie on
    disk (beyond 2.5 MB): request.body would hold the whole upload in memory."""
    if request.content_type == "multipart/form-data":
        files = []
        for field, uploads in sorted(request.FILES.lists()):
            for upload in uploads:
                digest = hashlib.sha256()
                for chunk in upload.chunks():
                    digest.update(chunk)
                upload.seek(0)
                files.append([field, upload.name, upload.size, digest.hexdigest()])
        body = json.dumps([sorted(request.POST.lists()), files]).encode()
    else:
        body = request.body
    head = f"{request.method} {request.get_full_path()} {request.content_type}\n"
    return hashlib.sha256(head.encode() + body).hexdigest()


def keepable(status: int) -> bool:
    # A 5xx or a 429 may be retried, and a 401 ran nothing: those are not replayed.
    return status < 500 and status not in (401, 429)


def replay(kept: Kept) -> HttpResponse:
    response = HttpResponse(kept["content"], status=kept["status"])
    for name, value in kept["headers"].items():
        response[name] = value
    response["Idempotent-Replayed"] = "true"
    return response


def authenticate(request: HttpRequest) -> HttpResponseBase | None:
    """Check the API key as the API's operations do, before anything is replayed or kept: a
    revoked key replays nothing, a made-up one keeps nothing, and an address locked out after
    wrong keys gets its 429 here too. The refusal's answer, or None for a good key."""
    from ninja.errors import AuthenticationError

    from tenantry.api.views import ApiKeyAuth, api

    try:
        key = ApiKeyAuth()(request)
    except Exception as error:  # the lock-out: answered by the API's handler
        return api.on_exception(request, error)
    if key is None:  # counted as a wrong key already: answered here, not counted twice
        return api.on_exception(request, AuthenticationError())
    request.auth = key  # type: ignore[attr-defined]  # as ninja sets it, for the rate limit
    return None


class IdempotencyMiddleware:
    """A POST under /api/v1/ with an Idempotency-Key runs once: for 24 hours, the same key with
    the same request gets the first answer again (Idempotent-Replayed: true) and does nothing;
    with another request, a 422; while the first is still being answered, a 409."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        given = request.headers.get("Idempotency-Key", "")
        token = bearer_token(request)
        if request.method != "POST" or not given or token is None or not is_api(request):
            return self.get_response(request)
        if (refused := authenticate(request)) is not None:
            return refused
        if len(given) > 255:
            return problem("The Idempotency-Key header is over 255 characters.", "invalid", 400)
        try:
            this = fingerprint(request)
        except BODY_ERRORS as error:
            from tenantry.api.views import api

            return api.on_exception(request, error)
        from tenantry.accounts.models import hash_key

        # Scoped by the API key: another account's key never reaches these answers.
        name = f"api-idempotency:{hash_key(token)}:{hashlib.sha256(given.encode()).hexdigest()}"
        kept: Kept | None = cache.get(name)
        if kept is None:
            if not cache.add(f"{name}:running", True, RUNNING_SECONDS):
                response = problem(
                    "A request with this Idempotency-Key is still being answered. "
                    "Retry in a moment to get its answer.",
                    "idempotency_in_progress",
                    409,
                )
                response["Retry-After"] = "1"
                return response
            try:
                # The first may have answered between the look above and the marker.
                kept = cache.get(name)
                if kept is None:
                    return self.answer_and_keep(request, name, this)
            finally:
                cache.delete(f"{name}:running")
        if kept["fingerprint"] != this:
            return problem(
                "This Idempotency-Key was used for another request (method, path or body) in "
                "the last 24 hours: send a new key with a new request.",
                "idempotency_mismatch",
                422,
            )
        return replay(kept)

    def answer_and_keep(self, request: HttpRequest, name: str, this: str) -> HttpResponseBase:
        response = self.get_response(request)
        # A streamed answer is not kept (no POST streams one).
        if isinstance(response, HttpResponse) and keepable(response.status_code):
            headers = {h: response[h] for h in KEPT_HEADERS if h in response}
            kept = Kept(
                fingerprint=this,
                status=response.status_code,
                content=response.content,
                headers=headers,
            )
            cache.set(name, kept, KEPT_SECONDS)
        return response


# NUL characters

NUL = "\x00"


def holds_nul(data: Any) -> bool:
    """Whether a text in `data` (a string, or lists and dicts of them, keys too) holds a NUL."""
    if isinstance(data, str):
        return NUL in data
    if isinstance(data, dict):
        return any(holds_nul(key) or holds_nul(value) for key, value in data.items())
    if isinstance(data, list | tuple):
        return any(holds_nul(value) for value in data)
    return False


def nul_part(request: HttpRequest) -> str | None:
    """Where the request holds a NUL character, for a person to read; None if nowhere. The
    API's bodies are left to its schemas (schemas.RequestBody): reading them here would read
    an upload before its API key is checked."""
    if NUL in request.path:
        return "its address"
    if holds_nul(dict(request.GET.lists())):
        return "its query string"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and key != "HTTP_COOKIE" and NUL in value:
            return f"its {key[5:].replace('_', '-').title()} header"
    if request.method == "POST" and not is_api(request) and holds_nul(dict(request.POST.lists())):
        return "a form field"
    return None


class NulMiddleware:
    """A request with a NUL character in its address, query, headers or form gets a 400 that
    says so, before anything looks it up: PostgreSQL's text cannot hold one, and a lookup or a
    write of it would fail with a 500. Uploaded files may hold any bytes."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            part = nul_part(request)
        except BODY_ERRORS:
            if not is_api(request):
                raise  # Django's 400, as when the CSRF check reads the form next
            return self.get_response(request)  # answered in JSON by the API's handlers
        if part is not None:
            detail = f"The request has a NUL character (U+0000) in {part}: no text may hold one."
            if is_api(request):
                return problem(detail, "invalid", 400)
            return HttpResponseBadRequest(detail, content_type="text/plain; charset=utf-8")
        # A cookie is the browser's, not typed: one holding a NUL (the cookie parser decodes
        # "\000") is dropped, as Django drops a malformed session key, not answered with 400s.
        request.COOKIES = {k: v for k, v in request.COOKIES.items() if not holds_nul([k, v])}
        return self.get_response(request)
