"""The service's settings: keyword arguments, else ``BACKPACKFLOW_*`` environment variables.

pydantic-settings reads and validates the environment (``BACKPACKFLOW_MAX_CONCURRENT_RUNS=4``
...), so a bad value fails at start-up with the variable's name instead of deep inside a run.
``BACKPACKFLOW_DATABASE_URL`` is the same variable the SQL store reads.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where file tools of the service's runs read unless ``files_dir`` says otherwise.
DEFAULT_FILES_DIR = Path(".backpackflow") / "files"
#: Where the demo workflows ship inside this package (filled by the build; may be empty).
PACKAGED_SEED_DIR = Path(__file__).resolve().parent / "examples"
#: The repository's ``examples/`` folder, for an editable install or a source checkout.
REPOSITORY_SEED_DIR = Path(__file__).resolve().parents[2] / "examples"


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
        "(events not yet stored are always kept)",
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
        "packaged examples, else the repository's examples/",
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
    writer_threads: int | None = Field(
        default=None,
        ge=1,
        description="event writer threads (each run stays with one); None: 4 on PostgreSQL, "
        "1 on SQLite (which writes one transaction at a time anyway)",
    )
    writer_max_batch: int = Field(default=200, ge=1, description="events per write")
    writer_max_delay: float = Field(
        default=0.05, ge=0, description="seconds the event writer waits to fill a batch"
    )
    flush_timeout: float = Field(
        default=30.0, gt=0, description="seconds a finished run waits for its events to be stored"
    )
    poll_interval: float = Field(
        default=0.5,
        gt=0,
        description="how often a stream polls the database for a run another process executes",
    )

    def resolved_files_dir(self) -> Path:
        """Where file tools of workflows read (see ``files_dir``), as an absolute path."""
        return (self.files_dir or DEFAULT_FILES_DIR).absolute()

    def resolved_seed_dir(self) -> Path | None:
        """The directory to seed from, or ``None`` when there is none (or seeding is off)."""
        if not self.seed:
            return None
        if self.seed_dir is not None:
            return self.seed_dir
        for candidate in (PACKAGED_SEED_DIR, REPOSITORY_SEED_DIR):
            if candidate.is_dir() and (
                any(candidate.glob("*.json")) or any(candidate.glob("*/*.json"))
            ):
                return candidate
        return None
