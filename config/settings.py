"""Settings for Agent Agency, read from the environment with django-environ.

With no environment at all the project runs on the embedded default: SQLite in
WAL mode under ``DATA_DIR``, the in-memory channel layer, DEBUG on and a dev
secret generated once into ``DATA_DIR``. ``DATABASE_URL`` switches to
PostgreSQL (psycopg 3 with Django's connection pool) and ``REDIS_URL`` to
channels-redis. Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

# An empty DATA_DIR (``DATA_DIR= make run``) means the default, not the current directory.
DATA_DIR = Path(env.str("DATA_DIR", default="") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)
# The embedded default is a developer's machine: DEBUG on. Only there may the system create
# its own development keys under DATA_DIR and call workers on loopback without being told to;
# production (DEBUG off, see docs/security.md) names its keystore and its allowed hosts.
EMBEDDED = DEBUG


def _dev_secret_key() -> str:
    """A per-checkout secret kept in DATA_DIR, so sessions survive restarts."""
    path = DATA_DIR / "dev-secret-key"
    if not path.exists():
        # Created 0600 from the start (never readable by others, not even for a moment).
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _dev_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Production hardening ---
# With DEBUG off the defaults are those of production behind HTTPS (manage.py check --deploy
# passes with them); each can be turned off for a deployment that knows why. A TLS terminator
# in front must say so with SECURE_PROXY_SSL_HEADER (e.g. X-Forwarded-Proto) and overwrite that
# header from clients, else the SSL redirect loops. /healthz stays on plain HTTP for probes.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be 0 (off) or a positive number of seconds.")
if _proxy_ssl_header := env.str("SECURE_PROXY_SSL_HEADER", default="").strip():
    if not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be a header name, e.g. X-Forwarded-Proto.")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")

# --- Keystore -------------------------------------------------------------------
# Where the master keys (encryption at rest) and named secrets come from: env://,
# file:///dir or openbao+https://host:port/mount/prefix (security/keystore). Unset: the
# embedded default, DATA_DIR/keystore, with a development key created there once;
# with DEBUG off it must be set.
KEYSTORE_URL = env.str("KEYSTORE_URL", default="")
if not KEYSTORE_URL and not EMBEDDED:
    raise ImproperlyConfigured(
        "KEYSTORE_URL must be set when DEBUG is off (env://, file:///dir or openbao+https://host:port/mount/prefix)."
    )
# How often each process reads the master keys again (it also does at once when a
# ciphertext does not open under the keys it holds): the bound on how long a process keeps
# encrypting under a key that rotation has replaced.
KEYSTORE_REFRESH_S = env.float("KEYSTORE_REFRESH_S", default=300.0)
if KEYSTORE_REFRESH_S <= 0:
    raise ImproperlyConfigured("KEYSTORE_REFRESH_S must be a positive number of seconds.")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "django_eventstream",
    "security",
    "audit",
    "tasks",
    "metrics",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost but for the security headers: it sees, and makes JSON, every /api/ error.
    "config.middleware.api_json_errors",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

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
                "security.context.roles_context",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# SQLite: WAL lets readers run beside the one writer, busy_timeout makes a
# writer wait instead of failing with "database is locked", and IMMEDIATE
# transactions take the write lock at BEGIN so two writers never deadlock on a
# read-to-write upgrade.
SQLITE_PRAGMAS = "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=10000;PRAGMA foreign_keys=ON;"

if env.str("DATABASE_URL", default=""):
    _db = env.db_url("DATABASE_URL")
    if _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL (or unset for SQLite).")
    _db.setdefault("OPTIONS", {})
    # Django's psycopg pool; CONN_MAX_AGE must stay 0 with a pool.
    _db["OPTIONS"]["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
    _db["CONN_MAX_AGE"] = 0
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(env.str("SQLITE_PATH", default=str(DATA_DIR / "agency.sqlite3"))),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 10,
                "init_command": SQLITE_PRAGMAS,
            },
            "TEST": {"NAME": DATA_DIR / "test-agency.sqlite3"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer --------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Live streams (SSE, django-eventstream) ---------------------------------------
# Stored events make Last-Event-ID replay work; the task timeline channels read the
# task's own event log instead of a copy (metrics/stream/storage.py).
EVENTSTREAM_STORAGE_CLASS = "metrics.stream.storage.AgencyStorage"
EVENTSTREAM_CHANNELMANAGER_CLASS = "metrics.stream.channels.AgencyChannelManager"
if REDIS_URL:
    # django-eventstream does not use the channel layer across processes: it has a Redis
    # publish/subscribe of its own, which must be set for events of a dispatcher process
    # to reach browsers attached to an ASGI process.
    from urllib.parse import unquote, urlsplit

    _redis = urlsplit(REDIS_URL)
    EVENTSTREAM_REDIS = {
        "host": _redis.hostname or "localhost",
        "port": _redis.port or 6379,
        "db": int((_redis.path or "/0").lstrip("/") or 0),
        **({"password": unquote(_redis.password)} if _redis.password else {}),
        **({"username": unquote(_redis.username)} if _redis.username else {}),
    }
# KPI snapshots on /api/v1/metrics/stream, every this many seconds.
AGENCY_KPI_INTERVAL_S = env.float("AGENCY_KPI_INTERVAL_S", default=5.0)
if AGENCY_KPI_INTERVAL_S <= 0:
    raise ImproperlyConfigured("AGENCY_KPI_INTERVAL_S must be a positive number of seconds.")
# Stored stream events older than this are trimmed (replay reaches back this far).
AGENCY_STREAM_RETENTION_S = env.float("AGENCY_STREAM_RETENTION_S", default=3600.0)
if AGENCY_STREAM_RETENTION_S <= 0:
    raise ImproperlyConfigured("AGENCY_STREAM_RETENTION_S must be a positive number of seconds.")

# --- Prometheus -----------------------------------------------------------------
# prometheus-client's multi-process mode: every process (ASGI servers, dispatchers) writes
# its samples under this directory and /metrics merges them. The client reads the
# variable when it is imported, so it is set here, before any app imports it.
PROMETHEUS_MULTIPROC_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default="") or DATA_DIR / "prometheus")
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)

# --- Worker proxy -----------------------------------------------------------------
# The worker hosts /api/proxy/workers/{name}/{path} may reach, by name (case-insensitive; "*"
# any): a worker elsewhere is a 403 {"error": "Host not allowed"}. To extend it, list the
# defaults and yours. The egress policy below applies to the proxy as well.
WORKER_PROXY_ALLOWED_HOSTS = env.list(
    "WORKER_PROXY_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "agent-agency-v3.local"]
)
WORKER_PROXY_TIMEOUT_S = env.float("WORKER_PROXY_TIMEOUT_S", default=5.0)

# --- Egress policy ---
# Where workers may be called (execute, cancel, health polls, chat, the worker proxy); the
# policy is security/egress.py. EGRESS_ALLOWED_HOSTS: "*" (any host), "*.example.com" (names
# under it) or exact names and addresses; any host in the embedded default, none in production
# until named. EGRESS_ALLOWED_NETWORKS: CIDRs explicitly allowed (a private worker subnet; an
# IP-literal URL inside one needs no host entry). Loopback is allowed when EMBEDDED or listed;
# metadata and unspecified addresses never.
EGRESS_ALLOWED_HOSTS = env.list("EGRESS_ALLOWED_HOSTS", default=["*"] if EMBEDDED else [])
EGRESS_ALLOWED_NETWORKS = env.list("EGRESS_ALLOWED_NETWORKS", default=[])
_LDH_NAME = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?"
for _entry in EGRESS_ALLOWED_HOSTS:
    _host = _entry.strip()
    if _host == "*" or re.fullmatch(rf"(\*\.)?{_LDH_NAME}", _host):
        continue
    try:
        ipaddress.ip_address(_host.removeprefix("[").removesuffix("]"))
    except ValueError:
        raise ImproperlyConfigured(
            f"EGRESS_ALLOWED_HOSTS: {_entry!r} is not *, *.<name>, a host name (IDNs in xn-- form) or an address."
        ) from None
for _entry in EGRESS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_entry.strip())
    except ValueError as _exc:
        raise ImproperlyConfigured(f"EGRESS_ALLOWED_NETWORKS: {_entry!r} is not a network ({_exc}).") from None

# --- File sandbox ---
# The only directories file operations may touch (security/sandbox.py), absolute paths. The
# first is the workspace: the reference worker applies each task's files under
# <workspace>/<task_id>/ and the gates read them back; it must be one directory. A later root
# may end in a pattern (/tmp/agent-*: each existing directory directly under /tmp whose name
# matches, if it is this user's and writable by no one else). Directories are resolved here,
# once; requests never are.
_SANDBOX_DEFAULT = [str(DATA_DIR / "workspace"), "/tmp/agent-*"]  # noqa: S108 - roots, not a temporary file
_GLOB = re.compile(r"[*?[]")
SANDBOX_ROOTS = [root.strip() for root in env.list("SANDBOX_ROOTS", default=_SANDBOX_DEFAULT)]
if not SANDBOX_ROOTS:
    raise ImproperlyConfigured("SANDBOX_ROOTS: name at least the workspace, a directory.")
for _index, _root in enumerate(SANDBOX_ROOTS):
    _head, _tail = os.path.split(os.path.normpath(_root or "."))
    _pattern = bool(_GLOB.search(_tail))
    if not os.path.isabs(_root) or "\x00" in _root or _GLOB.search(_head) or (_pattern and _index == 0):
        raise ImproperlyConfigured(
            f"SANDBOX_ROOTS: {_root!r} is not an absolute path with at most a pattern in its last component"
            " (the first root, the workspace, is one directory)."
        )
    SANDBOX_ROOTS[_index] = os.path.join(os.path.realpath(_head), _tail) if _pattern else os.path.realpath(_root)
    if SANDBOX_ROOTS[_index] == "/":
        raise ImproperlyConfigured("SANDBOX_ROOTS: '/' would allow every file.")

# --- Auth, API ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The dashboard's own login page; the admin keeps its own at /admin/login/.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    # Token first: an anonymous API call then gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "security.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["security.permissions.IsViewer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON only, bounded in size and depth (config/parsers.py); a form body is a 415.
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Agency API",
    "DESCRIPTION": "Control plane for autonomous agent work.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs are for people with a role, like the rest of the API.
    "SERVE_PERMISSIONS": ["security.permissions.IsViewer"],
    # Swagger UI and Redoc from drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The server refuses blank strings unless a field allows them; say so (minLength: 1).
    "ENFORCE_NON_BLANK_FIELDS": True,
    # Chat sessions' status would otherwise be "Status704Enum", a name that collides and warns in check --deploy.
    "ENUM_NAME_OVERRIDES": {"ChatSessionStatusEnum": "chat.models.SessionStatus"},
    # Every operation documents the errors it can answer with (config/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tasks.api.serializers.bulk_create_bounds",  # before document_errors, which reads minItems
        "config.openapi.document_errors",
    ],
}

# --- I18N, static ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# The dashboard's own assets (htmx, the stylesheet, the live-update script): no CDN.
STATICFILES_DIRS = [BASE_DIR / "config" / "static"]
# Serve straight from the app folders so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Logging --------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Every handler masks secrets (registered values and credential shapes) in every record;
# Django's own loggers are pointed at the root so none keeps an unfiltered handler of
# Django's default configuration.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "security.redaction.RedactingFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
    },
}
# Error reports (the DEBUG page, mails to admins) with secrets masked by value as well as by name.
DEFAULT_EXCEPTION_REPORTER = "security.redaction.RedactingExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "security.redaction.RedactingExceptionReporterFilter"

APP_VERSION = "0.1.0"

# --- Dispatch -------------------------------------------------------------------
# A running attempt's lease; its dispatcher renews it every third of this.
AGENCY_LEASE_S = env.float("AGENCY_LEASE_S", default=15.0)
# How often a dispatcher polls when no signal arrives, and reaps expired leases.
AGENCY_POLL_S = env.float("AGENCY_POLL_S", default=1.0)
AGENCY_REAP_S = env.float("AGENCY_REAP_S", default=2.0)
# Task-level retry backoff (exponential, full jitter) between attempts.
AGENCY_RETRY_BASE_S = env.float("AGENCY_RETRY_BASE_S", default=2.0)
AGENCY_RETRY_MAX_S = env.float("AGENCY_RETRY_MAX_S", default=300.0)

# --- SQL explorer (read-only queries) -------------------------------------------------
# PostgreSQL: the read-only role's URL (manage.py create_readonly_role makes the role); unset,
# queries cannot run on PostgreSQL. SQLite needs nothing: a read-only connection of its own.
DATABASE_READONLY_URL = env.str("DATABASE_READONLY_URL", default="")
# A run's time limit (statement_timeout / SQLite progress handler).
QUERY_TIMEOUT_S = env.float("QUERY_TIMEOUT_S", default=10.0)
if QUERY_TIMEOUT_S <= 0:
    raise ImproperlyConfigured("QUERY_TIMEOUT_S must be a positive number of seconds.")
# The most rows one CSV export of a saved query streams (each piece of it bound by QUERY_TIMEOUT_S).
QUERY_EXPORT_MAX_ROWS = env.int("QUERY_EXPORT_MAX_ROWS", default=1_000_000)
if QUERY_EXPORT_MAX_ROWS < 1:
    raise ImproperlyConfigured("QUERY_EXPORT_MAX_ROWS must be a positive number of rows.")

# --- Chat (WebSocket) ---------------------------------------------------------------
# An active session without a message for this long expires.
CHAT_SESSION_TTL_S = env.int("CHAT_SESSION_TTL_S", default=7 * 24 * 3600)
# A client frame's size in bytes, and a message's length in characters, at most.
CHAT_MAX_FRAME_BYTES = env.int("CHAT_MAX_FRAME_BYTES", default=16_384)
CHAT_MAX_CONTENT = env.int("CHAT_MAX_CONTENT", default=4_000)
# Per connection: frames a second on average, and in a burst (token bucket).
CHAT_RATE_PER_S = env.float("CHAT_RATE_PER_S", default=5.0)
CHAT_RATE_BURST = env.int("CHAT_RATE_BURST", default=20)
# Seconds between the server's heartbeats on an idle socket.
CHAT_HEARTBEAT_S = env.float("CHAT_HEARTBEAT_S", default=20.0)
# How long a chat worker may take to answer one message.
CHAT_WORKER_TIMEOUT_S = env.float("CHAT_WORKER_TIMEOUT_S", default=30.0)
