"""Request and response bodies of the API (pydantic), so the OpenAPI spec says exactly what
goes over the wire. Field names follow the store's JSON (and the FlowTrace data model)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

RunStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "paused"]
StepStatus = Literal["running", "succeeded", "failed", "canceled", "paused"]

#: Ids the store makes are 32 hex characters; this admits any id it accepts (up to 64) while
#: refusing what no id can contain (PostgreSQL text cannot even hold a NUL).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: Text the databases can store: anything but NUL.
_TEXT = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
Description = Annotated[str, Field(max_length=10_000, pattern=_TEXT)]
#: The flow config as the OpenAPI spec shows it: the flow JSON Schema of the installed node
#: types, which ``create_app`` adds to the spec's components (it depends on the plugins).
FLOW_CONFIG_REF = "#/components/schemas/FlowConfig"
FlowDocument = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": FLOW_CONFIG_REF}]})]
DecimalText = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["0.000369"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowCreate(_Body):
    """A new workflow: a name and a flow config document (validated against the flow schema
    composed from the installed node types; see ``GET /api/schema/flow``)."""

    name: Name
    description: Description | None = None
    graph_json: FlowDocument


class WorkflowUpdate(_Body):
    """The fields to change; those left out (or null) stay as they are."""

    name: Name | None = None
    description: Description | None = None
    graph_json: FlowDocument | None = None


class Workflow(BaseModel):
    id: str
    name: str
    description: str | None
    graph_json: FlowDocument
    version: int = Field(description="grows by one on every update (the ETag)")
    created_at: datetime
    updated_at: datetime


class WorkflowSaved(Workflow):
    warnings: list[str] = Field(
        default_factory=list,
        description="what works but is probably not meant (e.g. an unreachable node), as "
        "'$.path: message'",
    )


class RunCreate(_Body):
    """Start a run: its input variables (checked against the flow's declared ``inputs``)."""

    input_vars: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON data; strings without U+0000 or lone surrogates, nested at most "
        "max_json_depth (64) levels",
    )
    triggered_by: Annotated[str, Field(max_length=200, pattern=_TEXT)] | None = None


class ForkedFrom(BaseModel):
    """The run and Backpack commit a run was forked from."""

    run_id: str
    commit_id: str | None


class RunResume(_Body):
    """Resume a paused run: the answer to what it asked (its ``interrupt`` event has the
    prompt and the JSON Schema the answer must match)."""

    answer: Any = Field(
        default=None,
        description="JSON data valid against the schema the run asked with; leave it out "
        "only once the question's deadline has passed (the node then takes its timeout path)",
    )


class RunSummary(BaseModel):
    id: str
    workflow_id: str | None = Field(description="null once the workflow was deleted")
    workflow_name: str | None
    workflow_version: int | None
    triggered_by: str | None
    status: RunStatus
    input_vars: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total_tokens_input: int
    total_tokens_output: int
    total_cost: DecimalText = Field(description="exact decimal, in the pricing currency")
    total_latency_ms: float | None
    error_summary: str | None
    event_count: int = Field(description="trace events stored so far")
    last_seq: int = Field(description="the highest stored event seq")
    outputs: dict[str, Any] = Field(
        default_factory=dict,
        description="the values of the outputs the flow declares, once the run has ended",
    )
    forked_from: ForkedFrom | None = Field(
        default=None,
        description="the run and commit this run was forked from (POST /api/runs/{id}/fork); "
        "null for other runs",
    )


class RunStep(BaseModel):
    id: str
    run_id: str
    step: int
    node_id: str
    node_name: str | None
    node_type: str | None
    namespace: str | None
    status: StepStatus
    started_at: datetime | None
    finished_at: datetime | None
    latency_ms: float | None
    tokens_input: int
    tokens_output: int
    cost: DecimalText
    attempts: int
    retries: int
    cache_hit: bool
    action: str | None
    error: str | None
    parent_step: int | None = Field(
        default=None,
        description="the step this one is nested in (a tool call of an agent node: node_type "
        "'tool', node_name the tool's); null for a node execution",
    )


class RunDetail(RunSummary):
    steps: list[RunStep] = Field(
        description="one per node execution, and one per step nested in one (an agent's tool "
        "calls, with parent_step), in step order"
    )


class LlmCall(BaseModel):
    """One LLM request of a step and the response that answered it."""

    seq: int | None = Field(description="the seq of the request event (of the response if none)")
    provider: str | None
    model: str | None
    messages: Any = Field(description="the prompt as sent: the request's messages")
    params: Any = Field(description="temperature, max_tokens, response_format, ...")
    response: dict[str, Any] | None = Field(
        description="the llm_response payload as stored: text, usage, latency_ms, exact cost, "
        "finish_reason, refusal; null: the call failed (a retry or a fallback follows)"
    )


class StepDetail(BaseModel):
    """What one step did, from its stored trace events (GET /api/runs/{id}/steps/{step})."""

    step: RunStep
    input: Any = Field(description="what the node's prep produced (prep_complete)")
    output: Any = Field(description="the node's parsed output (exec_complete's exec_result)")
    has_output: bool = Field(description="false while running, or when the exec failed")
    messages: Any = Field(description="the prompt of the call that answered: its messages")
    response: dict[str, Any] | None = Field(description="the raw response of that call")
    llm_calls: list[LlmCall] = Field(description="every LLM call, failed ones included")
    reads: list[dict[str, Any]] = Field(
        description="Backpack reads: key, found, access_granted, reason, read_as, seq"
    )
    writes: list[dict[str, Any]] = Field(
        description="Backpack writes: key, op, value_summary (a short JSON text, masked as in "
        "the trace; the whole value: GET .../state?commit=commit_id), commit_id, version, "
        "access_granted, reason, seq"
    )
    retries: list[dict[str, Any]] = Field(
        description="retry events: attempt, error, error_type, delay_s, provider, model"
    )
    fallbacks: list[dict[str, Any]] = Field(
        description="fallback events: from_provider, from_model, to_provider, to_model, reason"
    )
    cache_hits: list[dict[str, Any]] = Field(description="cache_hit events: cost_saved, usage")
    cost_saved: DecimalText = Field(description="what the cache hits saved, exact")
    errors: list[dict[str, Any]] = Field(
        description="error events: phase, error, error_type, error_id (the stack is in the "
        "server log under error_id)"
    )
    tool_calls: list[dict[str, Any]] = Field(description="tool_call/request/response events")
    interrupt: Any = Field(description="what a paused step asked (prompt, schema), or null")
    events: list[dict[str, Any]] = Field(description="the step's events, by seq (raw JSON)")
    events_truncated: bool = Field(
        description="the step has more events than one answer holds (the first are here; "
        "page the trace for the rest)"
    )


class CompareSide(BaseModel):
    """One step of one run in a run diff."""

    step: int
    node_id: str
    node_name: str | None
    node_type: str | None
    parent_step: int | None
    status: StepStatus
    prompt: Any = Field(description="the messages of the LLM call that answered, or null")
    output: Any = Field(description="the node's output (exec_complete), or null")
    model: str | None = Field(description="provider/model that answered, or null")
    tokens_input: int
    tokens_output: int
    cost: DecimalText
    latency_ms: float | None
    cache_hit: bool
    action: str | None
    error: str | None


class ComparePair(BaseModel):
    node_id: str | None
    occurrence: int = Field(description="the k-th execution of the node in its run")
    a: CompareSide | None = Field(description="null: only run b has this step")
    b: CompareSide | None = Field(description="null: only run a has this step")
    changed: list[str] = Field(description="the compared fields that differ (both sides)")


class RunCompare(BaseModel):
    """Two runs side by side, step by step (GET /api/runs/{a}/compare/{b})."""

    a: RunSummary
    b: RunSummary
    same_workflow: bool
    totals: dict[str, dict[str, Any]] = Field(
        description="a and b: status, steps, tokens, exact cost, latency; delta: b minus a"
    )
    steps: list[ComparePair]


class TraceEvent(BaseModel):
    """The kernel's event envelope, exactly as stored and as streamed."""

    id: str
    seq: int = Field(ge=1, description="1, 2, 3 ... within the run; the SSE event id")
    timestamp: float = Field(description="epoch seconds when the event was emitted")
    run_id: str
    step: int | None
    node_id: str | None
    node_name: str | None
    namespace: str | None
    type: str
    payload: Any
    parent_step: int | None = Field(
        default=None,
        description="only on the events of a nested step (an agent's tool call): the step it "
        "is nested in",
    )


class TracePage(BaseModel):
    run_id: str
    items: list[TraceEvent]
    next_after: int = Field(description="pass as ?after= to get the next page")
    has_more: bool = Field(description="the page is full: there may be more events already")


#: What a Backpack key may be: a non-empty string without surrounding white space or '*' (and,
#: like all stored text, without U+0000). White space is listed, not ``\s``: pydantic (Rust),
#: the spec's readers (ECMAScript) and the kernel (Python) each mean something else by it.
_SPACE = r"\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
BACKPACK_KEY_PATTERN = rf"^[^{_SPACE}*\x00]([^*\x00]*[^{_SPACE}*\x00])?$"
MAX_KEY_LENGTH = 1000
#: A state patch: keys the Backpack accepts (``propertyNames``, so a schema-valid patch is one
#: the service takes), any JSON values. The keys are checked by the fork itself
#: (:mod:`.timetravel`), which says what a key must be rather than quoting this pattern.
Patch = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": BACKPACK_KEY_PATTERN, "maxLength": MAX_KEY_LENGTH},
        }
    ),
]


class RunFork(_Body):
    """Fork a run: a new run from one of its Backpack commits (``GET .../commits`` lists them).

    The new run starts with the Backpack as it was right after ``commit_id`` (its history up to
    there included), ``patch`` packed on top, and, if ``input_vars`` are given, those inputs
    packed as the flow declares them; it goes on from the last node boundary at or before the
    commit (a commit made inside a node makes that node run again, on the state at the commit).
    """

    commit_id: Annotated[str, Field(pattern=ID_PATTERN)] = Field(
        description="the commit to fork from (a commit id of the run's history)"
    )
    patch: Patch = Field(
        default_factory=dict,
        description="Backpack keys to pack on top of the state at the commit (node id 'fork'), "
        "as JSON data",
    )
    input_vars: dict[str, Any] | None = Field(
        default=None,
        description="new run inputs, checked against the flow's declared inputs as a new run's "
        "are (defaults filled); absent: the source run's inputs, as they are in its Backpack",
    )
    triggered_by: Annotated[str, Field(max_length=200, pattern=_TEXT)] | None = None


class CommitInfo(BaseModel):
    """One Backpack commit of a run: one key packed, appended to or deleted."""

    commit_id: str
    seq: int = Field(description="1, 2, 3 ... within the Backpack's lineage")
    parent_id: str | None
    timestamp: float = Field(description="epoch seconds")
    node_id: str | None = Field(
        description="the node that wrote it ('fork' for a fork's patch; null for inputs)"
    )
    node_name: str | None
    namespace: str | None
    op: Literal["pack", "append", "delete"]
    key: str = Field(description="the key written")
    version: int = Field(description="the key's version after this commit")
    tags: list[str]
    step: int | None = Field(
        description="the top-level step during which it was made (a nested flow's commits "
        "carry the step of the node running it); null for the inputs, a fork's patch and "
        "commits made before the step counter started"
    )
    inherited: bool = Field(
        description="true for commits of the run this one was forked from (its history up to "
        "the fork)"
    )


class CommitPage(BaseModel):
    run_id: str
    status: str = Field(
        description="the checkpoint's status: running, paused, succeeded, failed or canceled"
    )
    forked_from: dict[str, Any] | None = Field(
        description="run_id, commit_id and seq of the fork's source, or null"
    )
    last_seq: int = Field(description="the seq of the run's last commit")
    items: list[CommitInfo]
    next_after: int = Field(description="pass as ?after= to get the next page")
    has_more: bool


class RunState(BaseModel):
    """The Backpack of a run at one commit (secrets masked as in the run's events)."""

    run_id: str
    commit_id: str | None = Field(description="the commit; null: the Backpack has no commit")
    seq: int
    state: dict[str, Any] = Field(description="every key and its value at that commit")
    items: dict[str, dict[str, Any]] = Field(
        description="per key: who wrote its value (node_id, node_name, namespace), when "
        "(timestamp), its version and commit_id"
    )
    backpack: dict[str, Any] | None = Field(
        default=None,
        description="with ?history=true: the Backpack's JSON form at that commit (its commits "
        "up to there, permissions, node marks), which Backpack.from_json loads",
    )


class StateChange(BaseModel):
    old: Any
    new: Any


class RunDiff(BaseModel):
    """What changed in a run's Backpack between two commits (secrets masked)."""

    run_id: str
    from_commit: str | None = Field(description="null: the empty state before any commit")
    from_seq: int
    to_commit: str | None
    to_seq: int
    added: dict[str, Any] = Field(description="keys present at `to` only, with their values")
    removed: dict[str, Any] = Field(description="keys present at `from` only, with their values")
    modified: dict[str, StateChange] = Field(description="keys whose value changed")


class CancelAccepted(BaseModel):
    id: str
    status: RunStatus = Field(description="the status when the cancellation was requested")
    detail: str


class Problem(BaseModel):
    """One thing wrong with a request."""

    loc: list[str | int] = Field(description="where, as FastAPI reports it")
    path: str = Field(description="where, as a JSON path into the request body or parameter")
    msg: str
    type: str


class ProblemResponse(BaseModel):
    detail: list[Problem]


class ErrorResponse(BaseModel):
    detail: str
    error_id: str | None = Field(
        default=None,
        description="names the server log entry with the whole story (server errors only)",
    )


class SessionCreate(_Body):
    """Log the web page in: an API token, exchanged for a session cookie."""

    token: Annotated[str, Field(min_length=1, max_length=200)]


class Session(BaseModel):
    """Who the caller is."""

    name: str = Field(description="the token's name ('local-dev' in local-dev mode)")
    role: Literal["admin", "runner", "viewer"]
    via: Literal["bearer", "cookie", "local-dev"]
    csrf_token: str | None = Field(
        description="send it as X-CSRF-Token with every change made with the session cookie"
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str = Field(description="'ok', or what is wrong")
    dialect: str
    active_runs: int
    queued_runs: int
    events_pending: int = Field(description="events accepted but not yet stored")
    events_failed: int = Field(description="events the writer gave up on since start")


class Version(BaseModel):
    name: str
    version: str
    git_sha: str | None
    schema_revision: str | None = Field(description="the database schema revision")
