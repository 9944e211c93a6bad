"""Tenantry's settings, read from TENANTRY_* environment variables.

Every variable has an embedded default that works on a fresh machine; the README lists them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import dj_database_url
from django.utils.csp import CSP


def env(name: str, default: str = "") -> str:
    return os.environ.get(f"TENANTRY_{name}", default)


BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(env("DATA_DIR", "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    # A fresh install keeps a generated key in the data dir, so sessions and encrypted
    # TOTP seeds survive restarts without the operator having to invent one.
    if key := env("SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env("DEBUG") == "1"
# bench/load.py's baseline: a trivial page at /bench/ping, served only when this is 1.
BENCH = env("BENCH") == "1"

# The portal's public address: links in emails point there, and an https address turns on
# secure cookies, HSTS and the proxy's X-Forwarded-Proto (production sits behind Caddy).
PORTAL_URL = env("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/")
_portal = urlsplit(PORTAL_URL)
HTTPS = _portal.scheme == "https"
BASE_DOMAIN = env("BASE_DOMAIN", "localhost")

# The hosts that reach the portal. Every other host is a database's (`<name>.<base domain>`,
# or a verified custom domain) or gets a 404 from the gateway, the first middleware: it is
# the one check of the Host header, so Django's ALLOWED_HOSTS lets every host through to it
# (custom domains are any names, known only to the database).
PORTAL_HOSTS = [_portal.hostname or "127.0.0.1", "127.0.0.1", "localhost", BASE_DOMAIN]
PORTAL_HOSTS += [h.strip() for h in env("ALLOWED_HOSTS").split(",") if h.strip()]
ALLOWED_HOSTS = ["*"]
CSRF_TRUSTED_ORIGINS = [PORTAL_URL]

INSTALLED_APPS = [
    "tenantry.portal.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "django_tasks_db",
    "ninja",
    "tenantry.accounts",
    "tenantry.portal",
    "tenantry.api",
    "tenantry.workspace",
    "tenantry.engines",
    "tenantry.databases",
    "tenantry.operations",
    "tenantry.backups",
    "tenantry.gateway",
    "tenantry.releases",
    "tenantry.billing",
    "tenantry.domains",
    "tenantry.support",
]

MIDDLEWARE = [
    # First, so that every answer carries its X-Request-Id, the gateway's own pages too.
    "tenantry.api.middleware.RequestIdMiddleware",
    # Before the gateway: its own pages (an unknown host, an expired database) get the policy
    # and the security headers too.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenantry.gateway.middleware.GatewayMiddleware",
    # Before anything reads the request: a NUL character in it is a 400, not a 500 on a
    # PostgreSQL control plane. After the gateway, which tells the API's requests (JSON answer).
    "tenantry.api.middleware.NulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "tenantry.databases.activity.middleware",
    # The API's, last: their own answers (a 429, a replayed POST) still get the headers of
    # the middleware above.
    "tenantry.api.middleware.RateLimitMiddleware",
    "tenantry.api.middleware.IdempotencyMiddleware",
]

ROOT_URLCONF = "tenantry.urls"
WSGI_APPLICATION = "tenantry.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The control plane. SQLite in WAL mode with IMMEDIATE transactions lets the web server and
# the worker write side by side without "database is locked" errors.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'tenantry.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"
        ),
        "transaction_mode": "IMMEDIATE",
    }

DATABASE_ROUTERS = ["tenantry.workspace.routers.TenantRouter"]
# Idle sessions to PostgreSQL tenant databases that a process keeps for its next requests
# (engines/backends/postgresql/pool.py); 0: a session per request.
TENANT_CONNECTIONS = max(0, int(env("TENANT_CONNECTIONS", "20")))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# Two caches shared by every process. "default" keeps security state (rate limits, used TOTP
# codes, the sweep's lock), which no traffic may evict; "gateway" keeps the host lookups, sized
# for the databases. The embedded default is the control database; production may use Redis or
# Valkey (TENANTRY_CACHE_URL=redis://host:6379/0, with its default policy, noeviction).
GATEWAY_CACHE_ENTRIES = 50_000


def caches_for(url: str) -> dict[str, dict[str, object]]:
    if url:
        return {
            alias: {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": f"tenantry-{alias}",
            }
            for alias in ("default", "gateway")
        }
    return {
        "default": {
            "BACKEND": "tenantry.portal.cache.KeepingCache",
            "LOCATION": "tenantry_cache",
            # Past this many rows, each write first removes the expired ones (never live ones).
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
        "gateway": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "tenantry_gateway_cache",
            "OPTIONS": {"MAX_ENTRIES": GATEWAY_CACHE_ENTRIES},
        },
    }


CACHES = caches_for(env("CACHE_URL"))

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Invitation mails an account may send a day (each reaches any address typed).
INVITES_PER_DAY = int(env("INVITES_PER_DAY", "200"))
# How long the activity log of each database keeps its entries (the sweep removes older ones).
ACTIVITY_DAYS = int(env("ACTIVITY_DAYS", "400"))
# A new database is free for this many days; then it expires unless a subscription pays for
# it. A subscription's invoice left unpaid this many days expires its databases.
TRIAL_DAYS = int(env("TRIAL_DAYS", "15"))
# Custom domains: at most this many a database; verified through these nameservers
# (comma-separated host[:port]; none: the system's resolver).
MAX_DOMAINS = int(env("MAX_DOMAINS", "10"))
DNS_NAMESERVERS = [h.strip() for h in env("DNS_NAMESERVERS").split(",") if h.strip()]
# Who may ask /internal/tls/ask (Caddy's on-demand TLS): addresses or networks.
TLS_ASK_FROM = [h.strip() for h in env("TLS_ASK_FROM", "127.0.0.1,::1").split(",") if h.strip()]
GRACE_DAYS = int(env("GRACE_DAYS", "14"))
# Where support requests and customers' replies are mailed (the desk at /desk/ lists them all).
SUPPORT_EMAIL = env("SUPPORT_EMAIL", "support@tenantry.localhost")
# Operations an account may have running at once: the others wait for its turn, so that one
# account never holds every worker.
OPERATIONS_PER_ACCOUNT = max(1, int(env("OPERATIONS_PER_ACCOUNT", "2")))
# An operation whose worker sent no heartbeat for this long is taken over by another worker.
OPERATION_STALE_SECONDS = int(env("OPERATION_STALE_SECONDS", "30"))
# Requests a minute that one API key may send (429 beyond).
API_RATE_LIMIT = int(env("API_RATE_LIMIT", "600"))

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"

# Mail: smtp://[user:password@]host:port[?tls=1], smtps://..., or files under the data dir.
EMAIL_URL = env("EMAIL_URL")
DEFAULT_FROM_EMAIL = env("EMAIL_FROM", "Tenantry <noreply@tenantry.localhost>")
if EMAIL_URL:
    _mail = urlsplit(EMAIL_URL)
    _options = parse_qs(_mail.query)
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _mail.hostname or "localhost",
                "port": _mail.port or 25,
                "username": unquote(_mail.username or ""),
                "password": unquote(_mail.password or ""),
                "use_tls": _options.get("tls") == ["1"],
                "use_ssl": _mail.scheme == "smtps" or _options.get("ssl") == ["1"],
                "timeout": 30,
            },
        }
    }
else:
    MAILERS = {
        "default": {
            "BACKEND": "tenantry.portal.mail.FileBackend",
            "OPTIONS": {"file_path": DATA_DIR / "mail"},
        }
    }

# Stored backups: folders under the data dir, or an S3 bucket (any S3-compatible store):
# s3://[ACCESS_KEY:SECRET_KEY@]bucket[/prefix][?endpoint_url=https://...&region=...]. Keys left
# out of the URL come from boto3's usual places (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY...).
BACKUP_STORAGE_URL = env("BACKUP_STORAGE_URL", str(DATA_DIR / "backups"))
# The files attached to support requests: the same kinds of places.
SUPPORT_STORAGE_URL = env("SUPPORT_STORAGE_URL", str(DATA_DIR / "support"))


def _storage(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme != "s3":
        location = parts.path if parts.scheme == "file" else url
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        }
    from boto3.s3.transfer import TransferConfig

    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, object] = {
        "bucket_name": parts.hostname,
        "location": parts.path.strip("/"),
        "endpoint_url": query.get("endpoint_url"),
        "region_name": query.get("region"),
        "addressing_style": query.get("addressing_style"),
        "access_key": unquote(parts.username or "") or None,
        "secret_key": unquote(parts.password or "") or None,
        "signature_version": "s3v4",
        "file_overwrite": False,
        # Parts are sent one after the other, from the thread that writes the backup: memory
        # stays at one part, and database connections stay in the thread that opened them.
        "transfer_config": TransferConfig(use_threads=False),
        "querystring_expire": 300,
        # A restore reads a backup through a temporary file: on disk beyond 16 MB.
        "max_memory_size": 16 * 1024 * 1024,
    }
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "backups": _storage(BACKUP_STORAGE_URL),
    "support": _storage(SUPPORT_STORAGE_URL),
}
# Uploaded backups are written to disk as they arrive (beyond 2.5 MB), never held in memory.
FILE_UPLOAD_TEMP_DIR = DATA_DIR / "uploads"
FILE_UPLOAD_TEMP_DIR.mkdir(exist_ok=True)

# Security headers and cookies.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline script anywhere, so no nonce and no 'unsafe-inline': every script is a static file
# (allauth's and ninja's pages pass their settings as JSON data blocks, which are not run).
# Styles come from static files only; the gateway's pages on a database's host take the
# portal's stylesheet from the portal (templates/standalone.html).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, f"{_portal.scheme}://{_portal.netloc}"],
    "img-src": [CSP.SELF, "data:"],
    "frame-ancestors": [CSP.NONE],
    # Connect posts a sign-in token from the portal to the database's own host.
    "form-action": [CSP.SELF, f"{_portal.scheme}://*.{BASE_DOMAIN}:*"],
    "base-uri": [CSP.NONE],
}
SILENCED_SYSTEM_CHECKS: list[str] = []

# django-allauth: email is the only identifier, verified by a link before the first sign-in.
ACCOUNT_ADAPTER = "tenantry.accounts.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Tenantry] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = _portal.scheme
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    # Wrong passwords (sign-in and re-authentication): 10 a minute from one address across
    # accounts, and a 5-minute lock-out after 5 for one account from one address: the key is
    # the email and the client address (accounts.lockout), so nobody elsewhere locks the
    # owner out.
    "login_failed": "10/m/ip,5/5m/key",
    # ... and at one account from all addresses together: past it, only devices that signed
    # in to it before may try (accounts.lockout).
    "login_failed_account": "30/h/key",
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reauthenticate": "10/m/user",
    # Sign-in to a database: the key is the database, the login and the client address.
    "workspace_login_failed": "10/m/ip,5/5m/key",
    # ... and the account password's failures across all its databases: the key is the
    # account and the client address.
    "workspace_account_failed": "5/5m/key",
    # Wrong, revoked or expired API keys from one client address; past it, even a good key
    # from there waits (429).
    "api_key_failed": "10/m/ip",
    # Support requests and replies an account may send (each mails the support team).
    "support": "30/h/user",
}

MFA_ADAPTER = "tenantry.accounts.adapters.MFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = "Tenantry"
MFA_PASSKEY_LOGIN_ENABLED = True
# Browsers allow WebAuthn on http://localhost; anywhere else it needs https.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not HTTPS

USERSESSIONS_TRACK_ACTIVITY = True
# Behind Caddy (an https portal), the client address is the last X-Forwarded-For hop.
ALLAUTH_TRUSTED_PROXY_COUNT = 1 if HTTPS else 0

NINJA_PAGINATION_PER_PAGE = 50

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Each line names the request it was written for (its X-Request-Id), "-" outside requests.
    "filters": {"request_id": {"()": "tenantry.api.middleware.RequestIdFilter"}},
    "formatters": {
        "line": {"format": "{levelname} {name} request_id={request_id} {message}", "style": "{"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "line",
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django_tasks_db": {"level": "INFO"},
        "django.tasks": {"level": "INFO"},
        "tenantry.portal.mail": {"level": "INFO"},  # where each mail written as a file is
    },
}
