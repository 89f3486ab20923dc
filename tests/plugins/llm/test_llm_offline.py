"""The offline extractive model: deterministic, useful, honest, and able to fail on cue."""

from __future__ import annotations

import json

import pytest
from llm_wire import SleepRecorder, run

from backpackflow_llm import (
    BUILTIN_PROVIDERS,
    AnthropicProvider,
    LLMRequest,
    MalformedResponse,
    Message,
    OfflineProvider,
    OpenAIProvider,
    Provider,
    ProviderConnectionError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
)
from backpackflow_llm.providers import create_provider
from backpackflow_llm.providers.offline import DEFAULT_MODEL, count_tokens

DOC = (
    "The Apollo program was the third human spaceflight program of the United States. "
    "Apollo landed the first humans on the Moon in 1969. "
    "The weather in Houston was warm that summer. "
    "The Saturn V rocket launched every crewed Apollo mission to the Moon. "
    "Apollo astronauts brought back Moon rocks that scientists still study. "
    "Lunch was served at noon."
)
SENTENCES = [s if s.endswith(".") else s + "." for s in DOC.split(". ")]


def ask(prompt: str, provider: OfflineProvider | None = None, **params: object):
    req = LLMRequest.from_prompt("offline", DEFAULT_MODEL, prompt, **params)  # type: ignore[arg-type]
    return run((provider or OfflineProvider()).complete(req))


def test_summary_is_extractive_deterministic_and_bounded():
    first = ask(f"Summarize the following text in 2 sentences:\n\n{DOC}")
    again = ask(f"Summarize the following text in 2 sentences:\n\n{DOC}")
    assert first == again
    picked = [s for s in SENTENCES if s in first.text]
    assert len(picked) == 2
    assert first.text == " ".join(picked)  # whole source sentences, in source order
    assert "weather" not in first.text and "Lunch" not in first.text  # the filler loses
    assert first.finish_reason == "stop"
    assert first.raw is not None and first.raw["model_kind"] == "offline-extractive"
    assert first.raw["task"] == "summarize"


def test_default_length_is_a_third_of_the_sentences_and_word_bounds_are_obeyed():
    default = ask(f"Summarize:\n\n{DOC}")
    assert len(default.raw["selected_sentences"]) == 2  # ceil(6 / 3)
    short = ask(f"Summarize this in under 15 words:\n\n{DOC}")
    assert len(short.text.split()) <= 15
    assert short.text in SENTENCES


def test_system_prompt_gives_directions():
    response = ask(DOC, system="You summarize in one sentence.")
    assert response.text in SENTENCES


def test_json_mode_returns_the_documented_object():
    response = ask(f"Summarize:\n\n{DOC}", response_format="json")
    data = json.loads(response.text)
    assert set(data) == {"summary", "keywords", "sentences"}
    assert data["sentences"] == 2
    assert data["keywords"][:2] == ["apollo", "moon"]
    assert data["summary"] == ask(f"Summarize:\n\n{DOC}").text


def test_questions_are_answered_from_the_text():
    response = ask(f"Which rocket launched the missions?\n\n{DOC}")
    assert response.text == SENTENCES[3]
    assert response.raw["task"] == "answer"
    prompt = f"Context: {DOC}\n\nQuestion: What did astronauts bring back?"
    data = json.loads(ask(prompt, response_format="json").text)
    assert data["answer"] == SENTENCES[4]


def test_a_question_the_text_cannot_answer_gets_an_honest_reply():
    response = ask("What is the capital of Peru?\n\nBees dance to share where flowers are.")
    assert "No sentence in the given text matches the question" in response.text


def test_keywords_task():
    assert ask(f"Extract 3 keywords:\n\n{DOC}").text == "apollo, moon, program"
    data = json.loads(ask(f"List the topics:\n\n{DOC}", response_format="json").text)
    # ties (one mention each) go to the word seen first
    assert data == {"keywords": ["apollo", "moon", "program", "third", "human"]}


def test_usage_counts_tokens_with_the_documented_tokenizer():
    assert count_tokens("Hello, world! It's 2024.") == 9  # Hello , world ! It ' s 2024 .
    req = LLMRequest(
        "offline",
        DEFAULT_MODEL,
        (Message("user", "One two."), Message("assistant", "Three."), Message("user", DOC)),
        system="Be brief.",
    )
    response = run(OfflineProvider().complete(req))
    expected_in = count_tokens("Be brief.") + 3 + 2 + count_tokens(DOC)
    assert response.usage.input_tokens == expected_in
    assert response.usage.output_tokens == count_tokens(response.text)
    assert response.usage.cached_input_tokens == 0


def test_max_tokens_truncates_and_says_so():
    response = ask(f"Summarize:\n\n{DOC}", max_tokens=5)
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 5
    assert response.text == "The Apollo program was the"


def test_json_mode_shrinks_to_stay_valid_under_max_tokens():
    full = ask(f"Summarize:\n\n{DOC}", response_format="json")
    bound = full.usage.output_tokens - 1
    response = ask(f"Summarize:\n\n{DOC}", response_format="json", max_tokens=bound)
    assert response.finish_reason == "length"
    data = json.loads(response.text)
    assert data["sentences"] == 1
    assert response.usage.output_tokens <= bound


def test_streaming_yields_word_chunks_and_simulated_latency():
    sleep = SleepRecorder()
    provider = OfflineProvider(latency_ms=300, sleep=sleep)
    chunks: list[str] = []
    req = LLMRequest.from_prompt("offline", DEFAULT_MODEL, f"Summarize:\n\n{DOC}", stream=True)
    response = run(provider.complete(req, on_chunk=chunks.append))
    assert "".join(chunks) == response.text
    assert len(chunks) == len(response.text.split())
    assert sum(sleep.delays) == pytest.approx(0.3)
    assert response.latency_ms == 300
    assert response == ask(f"Summarize:\n\n{DOC}", OfflineProvider(latency_ms=300, sleep=sleep))


def test_latency_without_streaming_is_one_sleep():
    sleep = SleepRecorder()
    ask("Hi.", OfflineProvider(latency_ms=40, sleep=sleep))
    assert sleep.delays == [0.04]


def test_fail_first_fails_the_first_calls_then_answers():
    provider = OfflineProvider(fail_first=2)
    for call in (1, 2):
        with pytest.raises(ServerError, match=f"call {call} of fail_first=2") as info:
            ask("Hi.", provider)
        assert info.value.transient and info.value.status == 500
    assert ask("Hi.", provider).text == "Hi."
    assert provider.calls == 3


def test_fail_models_always_fail_those_models():
    provider = OfflineProvider(fail_models={"offline-broken"}, failure="request")
    req = LLMRequest.from_prompt("offline", "offline-broken", "Hi.")
    with pytest.raises(ProviderRequestError, match="in fail_models"):
        run(provider.complete(req))
    assert ask("Hi.", provider).text == "Hi."


@pytest.mark.parametrize(
    ("failure", "error_class", "transient"),
    [
        ("server", ServerError, True),
        ("rate_limit", RateLimited, True),
        ("timeout", ProviderTimeout, True),
        ("connection", ProviderConnectionError, True),
        ("request", ProviderRequestError, False),
        ("malformed", MalformedResponse, False),
    ],
)
def test_failure_kinds(failure, error_class, transient):
    provider = OfflineProvider(fail_first=1, failure=failure, retry_after=1.5)
    with pytest.raises(error_class) as info:
        ask("Hi.", provider)
    assert type(info.value) is error_class
    assert info.value.transient is transient
    assert info.value.retry_after == (1.5 if failure == "rate_limit" else None)
    assert "injected" in str(info.value)


def test_unknown_model_is_refused():
    req = LLMRequest.from_prompt("offline", "gpt-4o", "Hi.")
    with pytest.raises(ProviderRequestError, match="only 'offline-\\*' models"):
        run(OfflineProvider().complete(req))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="failure must be one of"):
        OfflineProvider(failure="boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        OfflineProvider(latency_ms=-1)


def test_every_provider_satisfies_the_protocol():
    for provider in (OfflineProvider(), OpenAIProvider(), AnthropicProvider()):
        assert isinstance(provider, Provider)
    assert set(BUILTIN_PROVIDERS) == {"offline", "openai", "anthropic"}
    assert isinstance(create_provider("offline", latency_ms=1), OfflineProvider)
    with pytest.raises(ValueError, match="built-in providers are"):
        create_provider("nope")


def test_an_instruction_to_summarize_ignores_rhetorical_questions_in_the_text():
    text = "Why do bees dance? Bees dance to share where flowers are. The dance encodes distance."
    response = ask(f"Summarize:\n\n{text}")
    assert response.raw["task"] == "summarize"
