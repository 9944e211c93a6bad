"""The REST API under /api/v1/: every portal action, authenticated by an API key."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer

from tenantry.accounts.models import ApiKey, User


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = ApiKey.objects.authenticate(token)
        if key is not None:
            request.user = key.user
        return key


api = NinjaAPI(
    title="Tenantry API",
    version="1",
    description="Manage your Tenantry account and databases. Send `Authorization: Bearer tnt_…`.",
    auth=ApiKeyAuth(),
    urls_namespace="api",
)


def error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": message}, status=status)


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = error(
        request,
        "A valid API key is required: it is missing, wrong, revoked or expired, "
        "or developer mode is off.",
        401,
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = []
    for e in exc.errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "payload"))
        problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
    return error(request, "Invalid request: " + "; ".join(problems) + ".", 422)


class MeOut(Schema):
    email: str
    name: str
    company: str
    phone: str
    country: str
    developer_mode: bool
    two_factor: bool
    date_joined: datetime


@api.get("/me", response=MeOut, summary="The account that owns the API key")
def me(request: HttpRequest) -> MeOut:
    user: User = request.user  # type: ignore[assignment]
    return MeOut(
        email=user.email,
        name=user.name,
        company=user.company,
        phone=user.phone,
        country=user.country,
        developer_mode=user.developer_mode,
        two_factor=user.has_2fa,
        date_joined=user.date_joined,
    )
