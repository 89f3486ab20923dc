"""The ``llm`` node: one model call per run of the node, fully traced and priced.

``prep`` renders the prompt (and system prompt) templates into the exact request, which the
``prep_complete`` event shows. ``exec`` looks the request up in the response cache (a hit emits
``cache_hit`` with the cost saved and costs nothing), else emits ``llm_request``, calls the
provider chain (retries with backoff for transient errors, each a ``retry`` event; fallbacks to
the next provider, each a ``fallback`` event; streamed deltas as ``stream_chunk`` events),
prices the usage exactly and emits ``llm_response``, and adds tokens and cost to the run's
totals (which the run's ``max_tokens`` / ``max_cost`` limits watch). ``exec`` returns the raw
text; ``post`` parses JSON when ``response_format`` is ``json`` (a parse failure is a ``post``
error, with the raw text still in ``exec_complete``) and packs the output.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

import attrs
import jsonschema
import msgspec

from backpackflow import (
    AsyncNode,
    BackpackFlowError,
    BackpackView,
    ConfigError,
    PluginError,
    current_run,
)
from backpackflow.config import params_schema
from backpackflow.events import (
    CacheHitPayload,
    FallbackPayload,
    LLMRequestPayload,
    LLMResponsePayload,
    RetryPayload,
    StreamChunkPayload,
    StreamEventType,
    ToolCallPayload,
)
from backpackflow.jsondata import decimal_text
from backpackflow.jsondata import loads as load_json
from backpackflow.plugins import ToolType
from backpackflow.policy import policy_of
from backpackflow.runner import DependencyContainer, current_run_or_none
from backpackflow_llm import (
    FallbackInfo,
    LLMRequest,
    LLMResponse,
    Message,
    PricingTable,
    Provider,
    ResponseCache,
    RetryInfo,
    RetryPolicy,
    ToolSpec,
    cache_key,
    complete_with_fallback,
)
from backpackflow_nodes.templating import Bindings, Template, base_context, off_loop

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


@attrs.frozen(kw_only=True)
class ModelRef:
    """A (provider, model) pair to fall back to."""

    provider: NonEmpty
    model: NonEmpty


@attrs.frozen(kw_only=True)
class LLMParams:
    """Params of an llm node. ``provider`` names a dependency of the flow or a provider factory
    (``offline``, ``openai``, ``anthropic``); ``prompt`` and ``system`` are templates."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, description="user message (a template)")]
    provider: NonEmpty = "offline"
    model: NonEmpty = "offline-extractive-1"
    system: Annotated[str, msgspec.Meta(description="system prompt (a template)")] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    response_format: Literal["text", "json"] = "text"
    stream: bool = False
    fallbacks: list[ModelRef] = attrs.field(factory=list)
    max_attempts: Annotated[
        int, msgspec.Meta(ge=1, le=10, description="attempts per provider (transient errors)")
    ] = 3
    retry_base_delay: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    retry_max_delay: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    retry_after_max: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="the longest retry-after (s) waited for; a longer one fails at once",
        ),
    ] = 60.0
    cache: Annotated[bool, msgspec.Meta(description="use the flow's llm_cache")] = True
    cache_ttl: Annotated[float, msgspec.Meta(gt=0)] | None = None
    output_key: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    tools: Annotated[
        list[NonEmpty], msgspec.Meta(description="registered tools the model may call")
    ] = attrs.field(factory=list)
    tool_choice: (
        Annotated[
            str,
            msgspec.Meta(description='"auto", "none", "required" or the name of one of tools'),
        ]
        | None
    ) = None
    json_schema: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(description="the JSON Schema the answer must match (structured output)"),
        ]
        | None
    ) = None


class LLMOutputError(BackpackFlowError):
    """The model's answer is not what the node was told to expect (e.g. not JSON)."""


REFUSED = "refused"
"""The action of an llm node whose model refused to answer (its output is
``{"refusal": <the model's words>}``): a flow routes it with an edge labelled so."""


CACHE_DEPENDENCY = "llm_cache"
#: The service's rate limits and concurrency caps per provider (a ``ProviderLimits``).
LIMITS_DEPENDENCY = "llm_limits"
PRICING_DEPENDENCY = "pricing"


@functools.lru_cache(maxsize=1)
def default_pricing() -> PricingTable:
    """The shipped pricing map, loaded once."""
    return PricingTable.load()


class LLMNode(AsyncNode):
    """Calls a language model with a templated prompt; traced, priced, cached, with retries and
    provider fallbacks."""

    Params = LLMParams
    params: LLMParams

    # -------------------------------------------------------------- config

    @functools.cached_property
    def _templates(self) -> tuple[Bindings, Template, Template | None]:
        budget = policy_of(self.deps).templates
        bindings = Bindings(self.inputs, node_id=self.id, budget=budget)
        available = bindings.available()
        where = f"node {self.id!r} params"
        prompt = Template(self.params.prompt, where=f"{where}.prompt", budget=budget)
        prompt.check_names(available)
        system = None
        if self.params.system is not None:
            system = Template(self.params.system, where=f"{where}.system", budget=budget)
            system.check_names(available)
        return bindings, prompt, system

    def validate_config(self) -> None:
        """Load-time checks: templates compile and use only defined names; providers exist."""
        self._templates  # noqa: B018 - compiling raises ConfigError
        for provider in [self.params.provider, *(f.provider for f in self.params.fallbacks)]:
            self._check_provider(provider)
        self._tool_specs  # noqa: B018 - unknown tools raise ConfigError
        choice = self.params.tool_choice
        if choice is not None and choice not in (*TOOL_CHOICES, *self.params.tools):
            raise ConfigError(
                f"node {self.id!r}: params.tool_choice must be one of {list(TOOL_CHOICES)} or a "
                f"name in params.tools {self.params.tools}, got {choice!r}"
            )
        if self.params.json_schema is not None:
            try:
                jsonschema.validators.validator_for(self.params.json_schema).check_schema(
                    self.params.json_schema
                )
            except jsonschema.SchemaError as exc:
                raise ConfigError(
                    f"node {self.id!r}: params.json_schema is not a valid JSON Schema: "
                    f"{exc.message}"
                ) from None

    @functools.cached_property
    def _tool_specs(self) -> tuple[ToolSpec, ...]:
        """The declared tools as the model sees them (their parameter classes' JSON Schemas)."""
        registry = self.plugin_registry()
        specs = []
        for name in self.params.tools:
            try:
                tool = registry.tool(name)
            except PluginError as exc:
                raise ConfigError(f"node {self.id!r}: params.tools: {exc}") from None
            specs.append(tool_spec(tool))
        return tuple(specs)

    def _container(self) -> DependencyContainer:
        if self.deps is None:
            self.deps = DependencyContainer()
        container: DependencyContainer = self.deps
        return container

    def _check_provider(self, name: str) -> None:
        if self._container().has(name):
            return
        try:
            self.plugin_registry().dependency_factory(name)
        except PluginError as exc:
            raise ConfigError(
                f"node {self.id!r}: provider {name!r} is neither a dependency of the flow nor a "
                f"provider factory: {exc}"
            ) from None

    def _provider(self, name: str) -> Provider:
        container = self._container()
        if not container.has(name):
            from backpackflow.config import structure

            factory = self.plugin_registry().dependency_factory(name)
            options = structure({}, factory.options) if factory.options is not None else None
            container.register_factory(name, lambda c: factory.factory(options, c))
        provider = container.get(name)
        if not callable(getattr(provider, "complete", None)):
            raise ConfigError(
                f"node {self.id!r}: dependency {name!r} is not an LLM provider (it has no "
                f"async complete()), it is a {type(provider).__name__}"
            )
        return provider  # type: ignore[no-any-return]

    def _cache(self) -> ResponseCache | None:
        container = self._container()
        if not self.params.cache or not container.has(CACHE_DEPENDENCY):
            return None
        cache: ResponseCache = container.get(CACHE_DEPENDENCY)
        return cache

    def _limits(self) -> Callable[[str, str], AbstractAsyncContextManager[Any]] | None:
        """The gate of the service's per-provider limits, if it set any."""
        container = self._container()
        if not container.has(LIMITS_DEPENDENCY):
            return None
        gate: Callable[[str, str], AbstractAsyncContextManager[Any]]
        gate = container.get(LIMITS_DEPENDENCY).gate
        return gate

    def _pricing(self) -> PricingTable:
        container = self._container()
        if container.has(PRICING_DEPENDENCY):
            table: PricingTable = container.get(PRICING_DEPENDENCY)
            return table
        return default_pricing()

    # -------------------------------------------------------------- lifecycle

    async def prep_async(self, backpack: BackpackView) -> LLMRequest:
        return await off_loop(lambda: self._request(backpack))

    def _request(self, backpack: BackpackView) -> LLMRequest:
        """The request, its templates rendered (in a worker thread where the policy says)."""
        bindings, prompt, system = self._templates
        context = bindings.resolve(base_context(current_run_or_none(), backpack))
        text = _as_text(prompt.render(context))
        params = self.params
        return LLMRequest(
            provider=params.provider,
            model=params.model,
            messages=(Message("user", text),),
            system=_as_text(system.render(context)) if system is not None else None,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            response_format="json" if params.json_schema is not None else params.response_format,
            stream=params.stream,
            tools=self._tool_specs,
            tool_choice=params.tool_choice,
            json_schema=params.json_schema,
        )

    async def exec_async(self, request: LLMRequest) -> Any:
        return answer_of(await self.call_model(request))

    async def call_model(self, request: LLMRequest) -> LLMResponse:
        """One model call, traced and priced: the cache, ``llm_request``, the provider chain
        (retries, fallbacks, stream chunks), ``llm_response``, the run's totals, and a
        ``tool_call`` event for each tool the model asks to call."""
        response = await self._call_model(request)
        run = current_run()
        for call in response.tool_calls:
            run.emit(
                StreamEventType.TOOL_CALL, ToolCallPayload(call.name, dict(call.arguments), call.id)
            )
        return response

    async def _call_model(self, request: LLMRequest) -> LLMResponse:
        run = current_run()
        params = self.params
        cache = self._cache()
        key = cache_key(request) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None:
                run.emit(
                    StreamEventType.CACHE_HIT,
                    CacheHitPayload(
                        key, decimal_text(hit.cost.total), hit.response.usage.to_json()
                    ),
                )
                if request.stream:  # a streaming consumer still gets the text as a stream
                    run.emit(StreamEventType.STREAM_CHUNK, StreamChunkPayload(hit.response.text, 0))
                return hit.response
        chain = [(self._provider(params.provider), params.model)]
        chain += [(self._provider(ref.provider), ref.model) for ref in params.fallbacks]
        # the provider as it names itself (a dependency "primary" of type openai is "openai"),
        # as the retry, fallback and llm_response events of the same call name it
        run.emit(
            StreamEventType.LLM_REQUEST,
            LLMRequestPayload(
                chain[0][0].name,
                request.model,
                _messages(chain[0][0], request),
                _request_params(request),
            ),
        )
        chunks = 0

        def on_chunk(text: str) -> None:
            nonlocal chunks
            run.emit(StreamEventType.STREAM_CHUNK, StreamChunkPayload(text, chunks))
            chunks += 1

        def on_retry(info: RetryInfo) -> None:
            run.emit(
                StreamEventType.RETRY,
                RetryPayload(
                    str(info.error),
                    type(info.error).__name__,
                    info.attempt,
                    info.delay,
                    "exec",
                    info.provider,
                    info.model,
                ),
            )

        def on_fallback(info: FallbackInfo) -> None:
            run.emit(
                StreamEventType.FALLBACK,
                FallbackPayload(
                    info.from_provider,
                    info.from_model,
                    info.to_provider,
                    info.to_model,
                    info.reason,
                ),
            )
            provider = next(
                (p for p, m in chain if p.name == info.to_provider and m == info.to_model),
                chain[-1][0],
            )
            sent = attrs.evolve(request, provider=info.to_provider, model=info.to_model)
            run.emit(
                StreamEventType.LLM_REQUEST,
                LLMRequestPayload(
                    info.to_provider,
                    info.to_model,
                    _messages(provider, sent),
                    _request_params(request),
                ),
            )

        policy = RetryPolicy(
            max_attempts=params.max_attempts,
            base_delay=params.retry_base_delay,
            max_delay=params.retry_max_delay,
            max_retry_after=params.retry_after_max,
        )
        response = await complete_with_fallback(
            chain,
            request,
            policy=policy,
            on_retry=on_retry,
            on_fallback=on_fallback,
            on_chunk=on_chunk if request.stream else None,
            sleep=run.sleep,
            gate=self._limits(),
        )
        cost = self._pricing().price(response.provider, response.model, response.usage)
        run.emit(
            StreamEventType.LLM_RESPONSE,
            LLMResponsePayload(
                response.provider,
                response.model,
                response.text,
                response.usage.to_json(),
                response.latency_ms,
                decimal_text(cost.total),
                cost.known,
                response.finish_reason,
                response.refusal,
            ),
        )
        if not cost.known:
            run.log(
                f"node {self.id!r}: no price for {response.provider} model {response.model!r}; "
                "its cost is counted as 0 — add it to the pricing map",
                level="warning",
            )
        run.add_usage(
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost=cost.total,
        )
        if cache is not None and key is not None and _usable(response, request):
            # an answer post will reject (not the JSON asked for) is not replayed by later runs
            cache.set(key, response, cost, ttl=params.cache_ttl)
        return response

    async def post_async(self, backpack: BackpackView, request: LLMRequest, answer: Any) -> Any:
        action = None
        if isinstance(answer, dict) and "refusal" in answer:
            output: Any = answer
            action = REFUSED
        elif isinstance(answer, dict) and "tool_calls" in answer:
            output = answer  # {"text", "tool_calls"}: the calls are data for the flow
        else:
            output = self.parse_output(answer, request)
        run = current_run_or_none()
        if run is not None:
            run.outputs[self.id] = output
        backpack.pack(self.params.output_key or self.id, output)
        return action

    def parse_output(self, text: str, request: LLMRequest) -> Any:
        """The answer as the node's output: the text, or with JSON asked for the parsed value
        (validated against ``json_schema`` when there is one)."""
        if request.response_format != "json":
            return text
        try:
            value = load_json(text)
        except ValueError as exc:  # not JSON, or nested too deeply to store
            raise LLMOutputError(
                f"node {self.id!r}: the model's answer is not valid JSON ({exc}); the raw "
                "answer is in the node's exec_complete and llm_response events"
            ) from None
        if request.json_schema is not None:
            validator = jsonschema.validators.validator_for(request.json_schema)(
                request.json_schema
            )
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                where = "$" + "".join(
                    f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
                )
                raise LLMOutputError(
                    f"node {self.id!r}: the model's answer does not match params.json_schema "
                    f"at {where}: {error.message}"
                )
        return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


TOOL_CHOICES = ("auto", "none", "required")


def tool_spec(tool: ToolType) -> ToolSpec:
    """What a model is told of a registered tool: its name, description and the JSON Schema of
    its parameter class (inlined: providers want an object schema at the top)."""
    if tool.params is None:
        parameters: dict[str, Any] = {"type": "object"}
    else:
        schema = params_schema(tool.params)
        defs = dict(schema.get("$defs", {}))
        root = schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else None
        parameters = dict(defs.pop(root)) if root is not None else dict(schema)
        parameters.pop("$schema", None)
        parameters.pop("title", None)
        if defs:
            parameters["$defs"] = defs
    return ToolSpec(tool.name, tool.description or tool.name, parameters)


def answer_of(response: LLMResponse) -> Any:
    """What ``exec`` returns for a response: the text; ``{"text", "tool_calls"}`` when the model
    called tools; ``{"refusal"}`` when it refused."""
    if response.refusal is not None:
        return {"refusal": response.refusal}
    if response.tool_calls:
        return {"text": response.text, "tool_calls": [c.to_json() for c in response.tool_calls]}
    return response.text


def _usable(response: LLMResponse, request: LLMRequest) -> bool:
    """Whether ``post`` will accept the answer (valid JSON when JSON was asked for); a refusal
    is not cached (asked again, the model may answer)."""
    if response.refusal is not None:
        return False
    if request.response_format != "json" or response.tool_calls:
        return True
    try:
        load_json(response.text)
    except ValueError:
        return False
    return True


def _messages(provider: Provider, request: LLMRequest) -> list[dict[str, Any]]:
    """The exact messages ``provider`` sends for ``request`` (system prompt first)."""
    sent = getattr(provider, "messages_sent", None)
    if callable(sent):
        messages: list[dict[str, Any]] = sent(request)
        return messages
    system = [{"role": "system", "content": request.system}] if request.system else []
    return system + [{"role": m.role, "content": m.content} for m in request.messages]


def _request_params(request: LLMRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "response_format": request.response_format,
        "stream": request.stream,
    }
    if request.tools:
        params["tools"] = [t.name for t in request.tools]
    if request.tool_choice is not None:
        params["tool_choice"] = request.tool_choice
    if request.json_schema is not None:
        params["json_schema"] = request.json_schema
    return params
