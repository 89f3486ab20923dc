"""Retries and fallback chains, over the offline model and over real HTTP servers."""

from __future__ import annotations

import pickle

import pytest
from llm_wire import Reply, SleepRecorder, anthropic_events, openai_events, run

from backpackflow.errors import SerializationError
from backpackflow_llm import (
    AllProvidersFailed,
    AnthropicProvider,
    FallbackInfo,
    LLMRequest,
    LLMResponse,
    OfflineProvider,
    OpenAIProvider,
    ProviderError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    RetryInfo,
    RetryPolicy,
    ServerError,
    complete_with_fallback,
)
from backpackflow_llm.providers.base import OnChunk

REQUEST = LLMRequest.from_prompt("ignored", "ignored", "Hi there.")
NO_JITTER = RetryPolicy(jitter=0)


def err(cls: type[ProviderError] = ServerError, **kwargs: object) -> ProviderError:
    return cls("boom", provider="p", model="m", **kwargs)  # type: ignore[arg-type]


# ---- RetryPolicy ---------------------------------------------------------------------------


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(base_delay=0.5, multiplier=2, max_delay=3, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert RetryPolicy(multiplier=10, max_delay=7, jitter=0).delay(10_000) == 7


def test_jitter_removes_up_to_its_fraction():
    policy = RetryPolicy(base_delay=1, jitter=0.5)
    assert policy.delay(1, rand=lambda: 0.0) == 1.0
    assert policy.delay(1, rand=lambda: 0.5) == 0.75
    assert 0.5 <= policy.delay(1) <= 1.0


def test_retry_after_is_honoured_as_asked_up_to_its_bound():
    policy = RetryPolicy(base_delay=0.1, max_delay=5, jitter=0.5, max_retry_after=60)
    assert policy.delay(1, err(RateLimited, retry_after=2.5), rand=lambda: 0.9) == 2.5
    # a 60 s window is waited for in full, not retried early at max_delay
    assert policy.delay(1, err(RateLimited, retry_after=60)) == 60
    assert policy.should_retry(err(RateLimited, retry_after=60), 1)
    assert not policy.should_retry(err(RateLimited, retry_after=61), 1)


def test_a_wait_beyond_the_bound_fails_fast_naming_the_wait():
    slow = OfflineProvider(name="slow", fail_first=99, failure="rate_limit", retry_after=300)
    sleeper = SleepRecorder()
    with pytest.raises(AllProvidersFailed) as info:
        run(
            complete_with_fallback(
                [(slow, "offline-1")],
                LLMRequest.from_prompt("slow", "offline-1", "hi"),
                policy=RetryPolicy(max_attempts=5, max_retry_after=30),
                sleep=sleeper,
            )
        )
    assert sleeper.delays == []  # nothing waited, nothing retried
    assert len(info.value.attempts) == 1
    assert "the server asked to wait 300s, more than max_retry_after=30s" in str(info.value)


def test_only_transient_errors_are_retried():
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(err(ServerError), 1)
    assert policy.should_retry(err(ProviderTimeout), 2)
    assert not policy.should_retry(err(ServerError), 3)
    assert not policy.should_retry(err(ProviderRequestError), 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"base_delay": -1},
        {"multiplier": 0.5},
        {"jitter": 2},
        {"max_delay": "x"},
    ],
)
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


def test_policy_json_round_trip():
    policy = RetryPolicy(max_attempts=5, base_delay=0.1)
    assert RetryPolicy.from_json(policy.to_json()) == policy
    with pytest.raises(SerializationError, match="unknown fields"):
        RetryPolicy.from_json({"attempts": 3})


# ---- complete_with_fallback over the offline model ------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.retries: list[RetryInfo] = []
        self.fallbacks: list[FallbackInfo] = []
        self.sleep = SleepRecorder()

    async def go(self, chain, request=REQUEST, **kwargs) -> LLMResponse:
        kwargs.setdefault("policy", NO_JITTER)
        return await complete_with_fallback(
            chain,
            request,
            on_retry=self.retries.append,
            on_fallback=self.fallbacks.append,
            sleep=self.sleep,
            **kwargs,
        )


def test_transient_failures_are_retried_with_backoff_then_succeed():
    flaky = OfflineProvider(fail_first=2)
    rec = Recorder()
    response = run(rec.go([(flaky, "offline-extractive-1")]))
    assert response.text == "Hi there."
    assert (response.provider, response.model) == ("offline", "offline-extractive-1")
    assert [(r.attempt, r.delay, type(r.error)) for r in rec.retries] == [
        (1, 0.5, ServerError),
        (2, 1.0, ServerError),
    ]
    assert rec.sleep.delays == [0.5, 1.0]
    assert rec.fallbacks == []


def test_exhausted_retries_fall_back_to_the_next_pair():
    primary = OfflineProvider(fail_models={"offline-big"})
    backup = OfflineProvider(name="offline-backup")
    rec = Recorder()
    response = run(rec.go([(primary, "offline-big"), (backup, "offline-small")]))
    assert (response.provider, response.model) == ("offline-backup", "offline-small")
    assert len(rec.retries) == 2
    [fallback] = rec.fallbacks
    assert (fallback.from_provider, fallback.from_model) == ("offline", "offline-big")
    assert (fallback.to_provider, fallback.to_model) == ("offline-backup", "offline-small")
    assert fallback.reason.startswith("ServerError after retries (3 attempts): injected")
    assert isinstance(fallback.error, ServerError)


def test_a_non_transient_error_is_not_retried_but_falls_back():
    primary = OfflineProvider(fail_first=1, failure="request")
    rec = Recorder()
    response = run(rec.go([(primary, "offline-a"), (OfflineProvider(), "offline-b")]))
    assert response.model == "offline-b"
    assert rec.retries == []
    assert rec.fallbacks[0].reason.startswith("ProviderRequestError not retryable (1 attempt)")
    assert primary.calls == 1


def test_fallback_on_can_stop_the_chain_at_a_non_transient_error():
    primary = OfflineProvider(fail_first=1, failure="request")
    backup = OfflineProvider()
    rec = Recorder()
    with pytest.raises(AllProvidersFailed, match="stopped before offline/offline-b") as info:
        run(
            rec.go(
                [(primary, "offline-a"), (backup, "offline-b")],
                fallback_on=lambda e: e.transient,
            )
        )
    assert backup.calls == 0
    assert not info.value.transient


def test_when_everything_fails_the_error_lists_every_attempt():
    a = OfflineProvider(name="a", fail_first=99)
    b = OfflineProvider(name="b", fail_first=99, failure="rate_limit", retry_after=3)
    rec = Recorder()
    with pytest.raises(AllProvidersFailed) as info:
        run(
            rec.go(
                [(a, "offline-1"), (b, "offline-2")], policy=RetryPolicy(max_attempts=2, jitter=0)
            )
        )
    failed = info.value
    assert [(x.provider, x.model, x.attempt) for x in failed.attempts] == [
        ("a", "offline-1", 1),
        ("a", "offline-1", 2),
        ("b", "offline-2", 1),
        ("b", "offline-2", 2),
    ]
    assert "all 4 attempts failed" in str(failed)
    assert "a/offline-1 attempt 2: ServerError" in str(failed)
    assert "b/offline-2 attempt 2: RateLimited" in str(failed)
    assert failed.__cause__ is failed.last_error
    assert (failed.provider, failed.model, failed.retry_after) == ("b", "offline-2", 3)
    assert rec.sleep.delays == [0.5, 3]  # backoff for a, the server's retry-after for b
    assert isinstance(failed, ProviderError)
    clone = pickle.loads(pickle.dumps(failed))
    assert str(clone) == str(failed) and len(clone.attempts) == 4


def test_the_request_is_retargeted_to_each_pair():
    seen: list[tuple[str, str]] = []

    class Spy:
        name = "spy"

        async def complete(self, request: LLMRequest, *, on_chunk: OnChunk | None = None):
            seen.append((request.provider, request.model))
            raise ServerError("down", provider="spy", model=request.model, transient=False)

    with pytest.raises(AllProvidersFailed):
        run(complete_with_fallback([(Spy(), "m1"), (Spy(), "m2")], REQUEST, sleep=SleepRecorder()))
    assert seen == [("spy", "m1"), ("spy", "m2")]


def test_bugs_are_not_swallowed():
    class Broken:
        name = "broken"

        async def complete(self, request: LLMRequest, *, on_chunk: OnChunk | None = None):
            raise KeyError("a bug")

    backup = OfflineProvider()
    with pytest.raises(KeyError):
        run(complete_with_fallback([(Broken(), "x"), (backup, "offline-1")], REQUEST))
    assert backup.calls == 0


def test_empty_chain_is_refused():
    with pytest.raises(ValueError, match="empty"):
        run(complete_with_fallback([], REQUEST))


# ---- over real HTTP servers -----------------------------------------------------------------

OPENAI_OK = {
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1},
}
ANTHROPIC_OK = {
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": "from claude"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 2, "output_tokens": 2},
}


def openai(url: str, timeout: float = 5) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk", base_url=url, timeout=timeout)


def test_http_429_with_retry_after_then_success(wire_server):
    server = wire_server(
        Reply(status=429, json={"error": {"message": "slow"}}, headers={"retry-after": "1"}),
        Reply(json=OPENAI_OK),
    )
    rec = Recorder()
    response = run(rec.go([(openai(server.url), "gpt-4o-mini")]))
    assert response.text == "ok"
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body  # the same request again
    assert rec.sleep.delays == [1.0]
    assert isinstance(rec.retries[0].error, RateLimited)


def test_http_500_then_success(wire_server):
    server = wire_server(Reply(status=500, json={}), Reply(json=OPENAI_OK))
    rec = Recorder()
    assert run(rec.go([(openai(server.url), "gpt-4o-mini")])).text == "ok"
    assert [r.attempt for r in rec.retries] == [1]


def test_http_5xx_forever_falls_back_to_the_other_provider(wire_server):
    down = wire_server(Reply(status=503, json={"error": {"message": "down"}}))
    claude = wire_server(Reply(json=ANTHROPIC_OK))
    rec = Recorder()
    chain = [
        (openai(down.url), "gpt-4o-mini"),
        (AnthropicProvider(api_key="ak", base_url=claude.url), "claude-3-5-haiku-latest"),
    ]
    response = run(rec.go(chain))
    assert (response.provider, response.model, response.text) == (
        "anthropic",
        "claude-3-5-haiku-20241022",
        "from claude",
    )
    assert len(down.requests) == 3
    assert claude.last.json()["model"] == "claude-3-5-haiku-latest"
    assert claude.last.json()["messages"] == [{"role": "user", "content": "Hi there."}]
    [fallback] = rec.fallbacks
    assert (fallback.from_provider, fallback.to_provider) == ("openai", "anthropic")
    assert "HTTP 503" in fallback.reason


def test_a_silent_server_times_out_is_retried_then_falls_back(wire_server):
    silent = wire_server(Reply(hang=True))
    rec = Recorder()
    response = run(
        rec.go(
            [(openai(silent.url, timeout=0.1), "gpt-4o-mini"), (OfflineProvider(), "offline-1")],
            policy=RetryPolicy(max_attempts=2, jitter=0),
        )
    )
    assert response.provider == "offline"
    assert len(silent.requests) == 2
    assert all(isinstance(r.error, ProviderTimeout) for r in rec.retries)
    assert isinstance(rec.fallbacks[0].error, ProviderTimeout)


def test_401_is_not_retried(wire_server):
    server = wire_server(Reply(status=401, json={"error": {"message": "bad key"}}))
    rec = Recorder()
    response = run(rec.go([(openai(server.url), "gpt-4o"), (OfflineProvider(), "offline-1")]))
    assert response.provider == "offline"
    assert len(server.requests) == 1
    assert rec.retries == []
    assert rec.fallbacks[0].error.status == 401


def test_a_stream_cut_midway_is_retried_and_the_consumer_can_reset(wire_server):
    chunk = {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}
    rest = [
        {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2},
        },
    ]
    server = wire_server(
        Reply(events=openai_events(chunk, done=False), cut=True),
        Reply(events=openai_events(chunk, *rest)),
    )
    log: list[str] = []
    response = run(
        complete_with_fallback(
            [(openai(server.url), "gpt-4o-mini")],
            REQUEST.__class__.from_prompt("x", "y", "Hi", stream=True),
            on_chunk=log.append,
            on_retry=lambda info: log.append(f"<retry {info.attempt}>"),
            sleep=SleepRecorder(),
        )
    )
    assert log == ["Hel", "<retry 1>", "Hel", "lo"]
    assert response.text == "Hello"


def test_anthropic_overloaded_stream_falls_back(wire_server):
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    claude = wire_server(Reply(events=anthropic_events(overloaded)))
    rec = Recorder()
    response = run(
        rec.go(
            [
                (AnthropicProvider(api_key="ak", base_url=claude.url), "claude-sonnet-4-0"),
                (OfflineProvider(), "offline-1"),
            ],
            request=LLMRequest.from_prompt("x", "y", "Hi.", stream=True),
        )
    )
    assert response.provider == "offline"
    assert len(claude.requests) == 3
    assert rec.fallbacks[0].error.status == 529
