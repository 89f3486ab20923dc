"""The service's settings: keyword arguments, else ``BACKPACKFLOW_*`` environment variables.

pydantic-settings reads and validates the environment (``BACKPACKFLOW_MAX_CONCURRENT_RUNS=4``
...), so a bad value fails at start-up with the variable's name instead of deep inside a run.
``BACKPACKFLOW_DATABASE_URL`` is the same variable the SQL store reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backpackflow.policy import (
    EgressPolicy,
    EndpointSet,
    SandboxPolicy,
    TemplateBudget,
    parse_network,
)

#: Where file tools of the service's runs read unless ``files_dir`` says otherwise.
DEFAULT_FILES_DIR = Path(".backpackflow") / "files"
#: The names a browser on this machine reaches a loopback service by.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: A list setting read from the environment as "a,b,c" (or a JSON array).
TextList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything ``create_app`` needs to know; every field has a working default."""

    model_config = SettingsConfigDict(
        env_prefix="BACKPACKFLOW_", extra="ignore", frozen=True, validate_default=True
    )

    database_url: str | None = Field(
        default=None,
        description="sqlite:///path.db or postgresql://user:pw@host/db; None: the store's "
        "default SQLite file (.backpackflow/backpackflow.db in the working directory)",
    )
    max_concurrent_runs: int = Field(default=8, ge=1, description="runs executing at once")
    max_queued_runs: int = Field(
        default=1000, ge=0, description="runs waiting for a slot before new ones get 503"
    )
    sse_heartbeat: float = Field(
        default=15.0, gt=0, description="seconds between SSE comment heartbeats"
    )
    sse_retry_ms: int = Field(
        default=2000, ge=0, description="the reconnection delay SSE clients are told to use"
    )
    stream_buffer_events: int = Field(
        default=10_000,
        ge=0,
        description="already stored events of an active run kept in memory for SSE clients "
        "(events not yet stored are kept too, but for those the event writer moved to its "
        "spill file during a database outage)",
    )
    event_history_size: int = Field(
        default=0,
        ge=0,
        description="history of each run's kernel EventStreamer (the service keeps its own "
        "stream buffer, so none is needed)",
    )
    seed: bool = Field(default=True, description="seed demo workflows on first start")
    seed_dir: Path | None = Field(
        default=None,
        description="directory whose flow files (*.json and */*.json) are seeded; None: the "
        "examples of the installed plugins (backpackflow examples list)",
    )
    files_dir: Path | None = Field(
        default=None,
        description="the folder file tools of the service's runs read in (their flow_dir; "
        "tools refuse paths leaving it); None: .backpackflow/files in the working directory, "
        "never the working directory itself (an API client must not read the service's own "
        "files, .env included). Demo workflows read in their seed folder",
    )
    llm_cache: Path | None = Field(
        default=Path(".backpackflow/llm-cache.sqlite"),
        description="SQLite file of the LLM response cache shared by every run (a repeated "
        "run with the same inputs costs nothing); None: no cache. A flow that declares its own "
        "llm_cache dependency keeps it",
    )
    flow_cache_size: int = Field(
        default=64,
        ge=0,
        description="loaded flows kept per (workflow, version); runs of one version share "
        "the flow and its dependencies (LLM clients, response caches)",
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="seconds in-flight runs get to finish at shutdown"
    )
    writer_threads: int = Field(
        default=1,
        ge=1,
        description="event writer threads (each run stays with one); one batches every run's "
        "events into one transaction, which costs the least CPU on SQLite and PostgreSQL alike",
    )
    blocking_threads: int = Field(
        default=4,
        ge=1,
        description="threads for the service's blocking calls (the database, files): more "
        "threads running Python at once take the interpreter lock from the event loop in turn "
        "and delay every stream",
    )
    writer_max_batch: int = Field(default=200, ge=1, description="events per write")
    writer_max_delay: float = Field(
        default=0.05, ge=0, description="seconds the event writer waits to fill a batch"
    )
    outage_buffer_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="bytes of trace events each event writer holds in memory while the "
        "database is down (retried until it is back); beyond them events go to the spill file",
    )
    spill_dir: Path | None = Field(
        default=Path(".backpackflow/spill"),
        description="folder of the event writers' spill files (one per database and writer, "
        "made only when needed; what a stopped service left there is stored at the next "
        "start); None: no spill file, events past outage_buffer_bytes are dropped (counted, "
        "logged)",
    )
    spill_max_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=0,
        description="bytes each spill file may hold; past them events are dropped (counted in "
        "/health's events_failed, logged)",
    )
    durability: Literal["node", "commit", "exit", "off"] = Field(
        default="node",
        description="when runs write their checkpoint (docs/durable-runs.md): 'node' after "
        "each node (a crash re-runs the node in flight), 'commit' at every Backpack commit "
        "too, 'exit' only when the run ends (a crash fails the run), 'off' never (a crash "
        "fails the run). Checkpoint records ride in the event writer's transactions, so the "
        "run never waits for them; the cost is their rows (deltas: linear in what the run "
        "packs)",
    )
    flush_timeout: float = Field(
        default=30.0, gt=0, description="seconds a finished run waits for its events to be stored"
    )
    poll_interval: float = Field(
        default=0.5,
        gt=0,
        description="how often a stream polls the database for a run another process executes "
        "(without a live_feed)",
    )
    live_feed: str | None = Field(
        default=None,
        description="the live feed service processes share (redis://host:6379/0, through the "
        "plugin registered for its scheme): every run's stored events and cancel requests "
        "reach every process, so any instance streams and cancels any run; None: one "
        "process, streams of other processes' runs poll the database",
    )
    provider_rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description="rate limits of LLM providers every run of the service shares, e.g. "
        '{"openai": "10/second,500/minute"} (N/second, /minute, /hour or /day); with a '
        "live_feed, shared by every process",
    )
    provider_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description='calls of an LLM provider in flight at once, e.g. {"openai": 8}; with a '
        "live_feed, across every process",
    )
    node_type_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description='nodes of a type executing at once in all runs, e.g. {"agent": 4}; with a '
        "live_feed, across every process",
    )
    provider_limit_wait: float = Field(
        default=300.0,
        gt=0,
        description="seconds an LLM call waits for a permit of its provider's rate limit before "
        "it fails (RateLimited, not retried; the node's fallbacks are tried)",
    )
    live_feed_check: float = Field(
        default=5.0,
        gt=0,
        description="seconds: a stream fed by the live feed re-reads the database this often "
        "while the feed brings nothing (a process that died, Redis down), and each process "
        "checks the cancel requests of its runs this often (the bound on a cancel whose "
        "message was missed)",
    )

    # ------------------------------------------------------------------ executors
    # Where runs execute (plugins/backpackflow_server/executors.py, docs/deploy.md).
    executor: str = Field(
        default="in-process",
        min_length=1,
        description="where runs execute: 'in-process' (the service's own event loop, one "
        "machine) or an executor a plugin registers ('celery': backpackflow worker processes "
        "on any number of hosts)",
    )
    broker_url: SecretStr | None = Field(
        default=None,
        description="the message broker of a worker executor (redis://host:6379/0, "
        "amqp://user:password@host:5672//); secret: it may hold a password",
    )
    broker_queue: str = Field(
        default="backpackflow",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="the broker queue runs wait in: services and workers of one deployment "
        "share it; another deployment on the same broker uses another",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a worker's lease on a run it drives: renewed every third of it; a "
        "worker silent this long loses its runs to another worker (which resumes them from "
        "their checkpoints)",
    )
    visibility_timeout: float = Field(
        default=3600.0,
        gt=0,
        description="seconds the broker waits for a worker to acknowledge a run before it "
        "hands the run to another worker (Redis broker): the bound on how late a run whose "
        "worker died is redelivered; keep it above the longest run",
    )

    # ------------------------------------------------------------------ the service edge
    # Who may call the API, from where, and how much one request may ask (docs/security.md).

    auth: Literal["tokens", "local-dev"] = Field(
        default="tokens",
        description="'tokens': every API request needs an API token (Authorization: Bearer, "
        "or the web UI's session cookie); 'local-dev': no token, every loopback client is an "
        "admin -- only for a service listening on a loopback address (serve refuses "
        "otherwise, and requests from other addresses are refused)",
    )
    allowed_hosts: TextList = Field(
        default=list(LOOPBACK_HOSTS),
        description="Host header values the service answers ('*.example.com' matches "
        "subdomains; '*' any host): other names get 400, which defeats DNS rebinding",
    )
    allowed_origins: TextList = Field(
        default=[],
        description="browser origins ('https://flows.example.com') allowed to send "
        "state-changing requests besides the service's own origin",
    )
    cors_origins: TextList = Field(
        default=[],
        description="origins a browser may call the API from with CORS (off when empty); "
        "they may also send state-changing requests",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="key signing the web UI's session cookies; None: a random key per process "
        "(sessions end when it restarts; set one shared key for several service processes)",
    )
    session_max_age: int = Field(
        default=8 * 3600, ge=60, description="seconds a web UI session lasts"
    )
    session_cookie_secure: bool | None = Field(
        default=None,
        description="mark the session cookie Secure (HTTPS only); None: when the request "
        "came over HTTPS",
    )
    token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="seconds a checked token is remembered (a revoked token stops working "
        "within this time); 0: look every request up",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="the largest request body; larger get 413"
    )
    max_json_depth: int = Field(
        default=64,
        ge=8,
        le=200,  # the deepest the run store keeps (backpackflow_store_sql.portable.MAX_DEPTH)
        description="how deep objects and arrays may nest in a request body (422 beyond)",
    )
    max_flow_nodes: int = Field(
        default=1000, ge=1, description="nodes a flow may have, nested flows included (422)"
    )
    validation_threads: int = Field(
        default=2,
        ge=1,
        description="worker threads validating and loading flows and large request bodies "
        "(off the event loop, so one request cannot stall the others)",
    )

    @field_validator(
        "allowed_hosts",
        "allowed_origins",
        "cors_origins",
        "flow_env_allowlist",
        "egress_allow_networks",
        "egress_deny_networks",
        "egress_allow_hosts",
        "flow_sinks",
        "sinks",
        mode="before",
    )
    @classmethod
    def _text_list(cls, value: Any) -> Any:
        """``"a, b"`` or ``'["a", "b"]'`` (as environment variables hold them) → a list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if host != "*" and ("*" in host[1:] or (host.startswith("*") and host[:2] != "*.")):
                raise ValueError(f"{host!r}: a wildcard host is '*' or like '*.example.com'")
        return [host.lower() for host in hosts]

    @field_validator("allowed_origins", "cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        normalized = []
        for origin in origins:
            parts = urlsplit(origin.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise ValueError(
                    f"{origin!r}: an origin is scheme://host[:port], e.g. https://example.com"
                )
            normalized.append(f"{parts.scheme}://{parts.netloc}".lower())
        return normalized

    budget_refresh_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how old the budgets and the stored spend a run's admission checks may be "
        "(this process counts its own runs' spend live; other processes' within this time); "
        "0: read them before every run",
    )
    budget_webhook_url: str | None = Field(
        default=None,
        description="where budget alerts are POSTed (the webhook sink's format: "
        '{"events": [...]}, each a custom event named budget_alert); None: alerts are events '
        "of the run that reached the budget, and log lines, only",
    )
    budget_webhook_secret_env: str | None = Field(
        default=None,
        description="the environment variable holding the secret that signs budget alerts "
        "(X-Backpackflow-Signature, as the webhook sink signs)",
    )

    # ---- the flow sandbox: what a flow submitted over the API may make the service do -------
    # (files_dir above is its files root). Lists are comma-separated in the environment
    # (BACKPACKFLOW_FLOW_ENV_ALLOWLIST=OPENAI_API_KEY,ANTHROPIC_API_KEY) or JSON arrays, as
    # the edge's lists are.
    flow_env_allowlist: TextList = Field(
        default=[],
        description="environment variables flows may read through ${NAME} references and "
        "options such as api_key_env / secret_env (default: none); every value read is masked "
        "in events",
    )
    egress_allow_networks: TextList = Field(
        default=[],
        description="networks flows may reach although they are not public (CIDRs or single "
        "addresses, e.g. 10.1.0.0/16, 127.0.0.1): http_fetch, webhook sinks, LLM base_url. "
        "Loopback, link-local (metadata), private, shared and reserved ranges are denied "
        "otherwise, after DNS resolution",
    )
    egress_deny_networks: TextList = Field(
        default=[],
        description="public networks flows may not reach either (e.g. this host's public "
        "address, a partner's range)",
    )
    egress_allow_hosts: TextList | None = Field(
        default=None,
        description="host names flows may reach (exact or *.example.com); None: any host "
        "whose addresses are allowed",
    )
    egress_allow_self: bool = Field(
        default=False,
        description="let flows call this service's own API (its listening address is denied "
        "otherwise, even inside an allowed network)",
    )
    flow_sinks: TextList = Field(
        default=["webhook"],
        description="event sink types a flow may declare in its 'sinks' (attached to each of "
        "its runs under this policy); others are refused when the workflow is saved",
    )
    template_max_seconds: float = Field(
        default=2.0, gt=0, description="wall time one template render may take"
    )
    template_max_output: int = Field(
        default=1_000_000, ge=1, description="characters one template render may produce"
    )
    template_max_int_bits: int = Field(
        default=4096, ge=64, description="largest integer template arithmetic may produce"
    )

    # ---- observability (docs/observability.md) -----------------------------------------------
    sinks: TextList = Field(
        default=[],
        description="event sinks the operator attaches to every run, as 'backpackflow run "
        "--sink' names them (e.g. otlp:http://collector:4318); the operator's own, so not "
        "bound by the flow sandbox",
    )
    sink_options: dict[str, dict[str, Any]] = Field(
        default={},
        description='options of those sinks by sink type, JSON in the environment: {"otlp": '
        '{"headers_env": "OTLP_HEADERS", "capture_content": false}}',
    )
    metrics: Literal["token", "public", "off"] = Field(
        default="token",
        description="GET /metrics: 'token' needs a viewer token (as every read), 'public' "
        "needs none (a scraper on a private network), 'off' serves none",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="service logs: 'text', or 'json' (one JSON object per line: every request "
        "with its method, path, status, duration, request id, run id and trace id)",
    )

    @field_validator("egress_allow_networks", "egress_deny_networks", mode="after")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        for entry in value:
            parse_network(entry)  # ValueError names the entry
        return value

    def sandbox_policy(
        self, *, files_deny: tuple[Path, ...] = (), self_endpoints: EndpointSet | None = None
    ) -> SandboxPolicy:
        """The policy every flow of the service runs under (see :mod:`backpackflow.policy.sandbox`):
        files below :meth:`resolved_files_dir` (except ``files_deny``), public egress unless
        allowed and never to ``self_endpoints`` (unless ``egress_allow_self``), only the
        allowlisted environment, template budgets, CPU work off the event loop."""
        hosts = self.egress_allow_hosts
        own = () if self.egress_allow_self or self_endpoints is None else self_endpoints
        return SandboxPolicy(
            files_root=self.resolved_files_dir(),
            files_deny=files_deny,
            egress=EgressPolicy.from_settings(
                allow_networks=self.egress_allow_networks,
                deny_networks=self.egress_deny_networks,
                allow_hosts=hosts,
                deny_endpoints=own,
            ),
            env_allowlist=frozenset(self.flow_env_allowlist),
            templates=TemplateBudget(
                max_int_bits=self.template_max_int_bits,
                max_seconds=self.template_max_seconds,
                max_output=self.template_max_output,
            ),
            offload=True,
        )

    def resolved_files_dir(self) -> Path:
        """Where file tools of workflows read (see ``files_dir``), as an absolute path."""
        return (self.files_dir or DEFAULT_FILES_DIR).absolute()
