"""The embedded offline model: deterministic, no network, and honest about what it is.

It is *not* a language model. It is a small rule-based **extractive** system for demos, tests
and air-gapped runs: every word it answers with is copied from the prompt. It reads the last
user message (and the system prompt for instructions), decides a task, and answers:

- **summarize** (default): ranks the source sentences by the frequency of their content words
  (stop words removed, a floor on sentence length so short sentences don't win on density)
  and returns the best ones in their original order. The length bound comes from the prompt
  ("in 2 sentences", "under 40 words") or defaults to a third of the sentences, at most 3.
- **answer** (the prompt asks a question, a sentence ending in ``?``, and gives source text):
  returns the source sentence sharing the most content words with the question, or says that
  no sentence matches.
- **keywords** (the prompt mentions keywords, tags or topics): the most frequent content words.

The instruction is told apart from the source text by layout: a short first paragraph or a
first line ending in ``:`` (or ``Summarize: <text>`` on one line) is the instruction.
``response_format="json"`` returns one JSON object, e.g.
``{"summary": ..., "keywords": [...], "sentences": n}`` (``answer`` instead of ``summary`` for
questions; only ``keywords`` for the keywords task).

Tokens are counted with :func:`count_tokens`: one token per run of word characters and one per
other non-space character (regex ``\\w+|[^\\w\\s]``). Input tokens are those of the system prompt
plus every message; output tokens those of the answer; ``max_tokens`` truncates the answer
(``finish_reason="length"``; in JSON mode whole sentences are dropped first so the JSON stays
valid when it can).

**Tools**: given ``tools`` (and ``tool_choice`` other than ``"none"``), it calls them the way a
model would, deterministically, so an agent runs with no key. It finds the file names in the
last user message (words like ``sales.csv``); each goes to a tool with a required ``path``
parameter (``.csv`` files to a tool whose name holds ``csv``, others to one whose name holds
``read`` or ``file``, else the first such tool). One turn calls every pending file of one tool,
in parallel, tools in the order their first file appears; once every file has its result (the
``tool`` messages), it answers extractively from the question and those results.

For demos of retries and fallbacks it injects failures deterministically: ``fail_first=N``
fails the first N calls of this instance, ``fail_models`` always fails the named models,
``failure`` picks the error raised. ``refusal="..."`` makes it refuse, with those words, every
call it would answer (tool calls are still made): the response's ``refusal``, with ``text`` ""
and ``finish_reason`` ``"refusal"``, as a real model's refusal comes back. ``latency_ms``
simulates latency through the injectable ``sleep`` and is reported as the response's
``latency_ms``, so runs replay identically.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from fractions import Fraction
from typing import Any, Literal

import attrs

from backpackflow_llm.providers.base import OnChunk
from backpackflow_llm.types import (
    LLMRequest,
    LLMResponse,
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    ToolCall,
    Usage,
)

__all__ = ["DEFAULT_MODEL", "MODEL_KIND", "TOKENIZER", "OfflineProvider", "count_tokens"]

DEFAULT_MODEL = "offline-extractive-1"
MODEL_KIND = "offline-extractive"
TOKENIZER = r"\w+|[^\w\s]"
_TOKEN_RE = re.compile(TOKENIZER)

Failure = Literal["server", "rate_limit", "timeout", "connection", "request", "malformed"]
Task = Literal["summarize", "answer", "keywords"]


def count_tokens(text: str) -> int:
    """Tokens of ``text`` as the offline model counts them (see :data:`TOKENIZER`)."""
    return len(_TOKEN_RE.findall(text))


_STOP_WORDS = frozenset(
    (
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
        "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between",
        "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during",
        "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
        "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is",
        "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not",
        "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves",
        "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that",
        "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this",
        "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
        "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
        "you", "your", "yours", "yourself", "yourselves", "text", "following", "please", "given",
        "summarize", "summary", "summarise", "tldr", "keywords", "keyword", "sentence",
        "sentences", "words", "answer", "question",
    )
)  # fmt: skip
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_NUM = r"(\d+|" + "|".join(_NUMBERS) + r")"
_SENTENCE_BOUND = re.compile(_NUM + r"\s+(?:sentences?|bullet|points?|lines?)\b", re.I)
_WORD_BOUND = re.compile(_NUM + r"\s+words?\b", re.I)
_KEYWORD_BOUND = re.compile(_NUM + r"\s+(?:keywords?|tags?|topics?|key\s+terms?)\b", re.I)
_INSTRUCTION_START = re.compile(
    r"^\s*(?:please\s+)?(?:summar|tl;?dr|extract|list|give|find|answer|explain|describe|"
    r"identify|what|which|who|when|where|why|how|write|provide|read|return)",
    re.I,
)
_LABEL = re.compile(
    r"^(?:context|text|document|passage|article|source|input|question|q)\s*:\s*", re.I
)
_KEYWORD_TASK = re.compile(r"\b(keywords?|tags|topics|key terms)\b", re.I)
_MIN_SCORE_LENGTH = 8  # a sentence is scored as if it had at least this many content words


def _content_words(text: str) -> list[str]:
    words = (w.lower().strip("'-") for w in _WORD_RE.findall(text))
    return [w for w in words if w not in _STOP_WORDS and (len(w) > 2 or w.isdigit())]


def _forms(word: str) -> frozenset[str]:
    """The word and its crude stems ('used' -> 'use', 'models' -> 'model', 'landing' ->
    'land'/'lande'), so a question meets the source sentence in another inflection."""
    forms = {word}
    for suffix in ("s", "es", "d", "ed", "ing"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and not word.endswith("ss"):
            forms.add(stem)
            if suffix == "ing":
                forms.add(stem + "e")
    return frozenset(forms)


def _matches(question: set[str], sentence: str) -> set[str]:
    """The question words that some word of ``sentence`` matches in one of its forms."""
    forms = set().union(*(_forms(w) for w in _content_words(sentence)))
    return {q for q in question if _forms(q) & forms}


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBERS[text.lower()]


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        line = _LABEL.sub("", line.strip().lstrip("-*• ").strip())
        if line:
            out.extend(s.strip() for s in _SENTENCE_SPLIT.split(line) if s.strip())
    return out


def _split_instruction(message: str) -> tuple[str, str]:
    """(instruction, source text) of a user message, by layout (see the module docstring)."""
    text = message.strip()
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) >= 2:
        first = paragraphs[0]
        if len(first.split()) <= 40 and (
            first.endswith((":", "?")) or _INSTRUCTION_START.match(first)
        ):
            return first, "\n\n".join(paragraphs[1:])
    first_line, _, rest = text.partition("\n")
    if rest.strip() and first_line.rstrip().endswith(":"):
        return first_line.strip(), rest.strip()
    head, colon, tail = first_line.partition(":")
    if colon and tail.strip() and len(head.split()) <= 12 and _INSTRUCTION_START.match(head):
        return head.strip() + ":", (tail + ("\n" + rest if rest else "")).strip()
    return "", text


@attrs.frozen
class _Answer:
    task: Task
    text: str
    selected: tuple[int, ...]
    keywords: tuple[str, ...]
    sentences: tuple[str, ...]


class _Extractor:
    """The extractive rules, separate from the provider plumbing."""

    def __init__(self, system: str | None, message: str) -> None:
        instruction, source = _split_instruction(message)
        self.directions = f"{system or ''}\n{instruction}"
        self.sentences = _sentences(source)
        # The question is in the instruction; without an instruction, a question in the
        # text (after its context, say) is the task. An instruction without one ("Summarize")
        # leaves the text's rhetorical questions alone.
        question = [s for s in self.sentences if s.endswith("?")]
        asked = [s for s in _sentences(instruction) if s.endswith("?")]
        if asked or (not instruction and question and len(question) < len(self.sentences)):
            self.question = " ".join(asked or question)
            self.sentences = [s for s in self.sentences if s not in question]
        else:
            self.question = ""
        words = [w for s in self.sentences for w in _content_words(s)]
        self.freq = Counter(words)
        self.order = {w: i for i, w in reversed(list(enumerate(words)))}

    def task(self) -> Task:
        if _KEYWORD_TASK.search(self.directions) and not self.question:
            return "keywords"
        return "answer" if self.question else "summarize"

    def keywords(self, limit: int) -> tuple[str, ...]:
        ranked = sorted(self.freq, key=lambda w: (-self.freq[w], self.order[w]))
        return tuple(ranked[:limit])

    def _score(self, sentence: str) -> Fraction:
        words = _content_words(sentence)
        return Fraction(sum(self.freq[w] for w in words), max(_MIN_SCORE_LENGTH, len(words)))

    def summarize(self) -> tuple[int, ...]:
        n = len(self.sentences)
        if n == 0:
            return ()
        ranked = sorted(range(n), key=lambda i: (-self._score(self.sentences[i]), i))
        sentence_bound = _SENTENCE_BOUND.search(self.directions)
        word_bound = _WORD_BOUND.search(self.directions)
        if word_bound:
            limit = _number(word_bound.group(1))
            chosen: list[int] = []
            used = 0
            for i in ranked:
                size = len(self.sentences[i].split())
                if used + size <= limit:
                    chosen.append(i)
                    used += size
            return tuple(sorted(chosen or ranked[:1]))
        count = _number(sentence_bound.group(1)) if sentence_bound else min(3, math.ceil(n / 3))
        return tuple(sorted(ranked[: max(1, count)]))

    def answer(self) -> tuple[int, ...]:
        """The sentence best matching the question: rare shared words count most (each
        matched word weighs 1 / the number of sentences it matches), then the summary score."""
        asked = set(_content_words(self.question))
        matched = [_matches(asked, s) for s in self.sentences]
        spread = Counter(w for words in matched for w in words)
        best: tuple[Fraction, Fraction, int] | None = None
        for i, words in enumerate(matched):
            if not words:
                continue
            weight = sum((Fraction(1, spread[w]) for w in words), Fraction(0))
            key = (weight, self._score(self.sentences[i]))
            if best is None or key > best[:2]:
                best = (*key, i)
        return () if best is None else (best[2],)

    def run(self) -> _Answer:
        task = self.task()
        bound = _KEYWORD_BOUND.search(self.directions)
        keywords = self.keywords(_number(bound.group(1)) if bound else 5)
        if task == "keywords":
            return _Answer(task, ", ".join(keywords), (), keywords, tuple(self.sentences))
        selected = self.summarize() if task == "summarize" else self.answer()
        text = " ".join(self.sentences[i] for i in selected)
        if task == "answer" and not selected:
            text = (
                "No sentence in the given text matches the question "
                "(the offline extractive model answers only from text in the prompt)."
            )
        return _Answer(task, text, selected, keywords, tuple(self.sentences))


def _render(answer: _Answer, selected: tuple[int, ...], keywords: int, json_mode: bool) -> str:
    """The answer as text or JSON, keeping only the ``selected`` source sentences and the
    first ``keywords`` keywords (JSON only; fewer of each is how JSON fits ``max_tokens``)."""
    kept = list(answer.keywords[:keywords])
    if answer.task == "keywords":
        return json.dumps({"keywords": kept}, ensure_ascii=False) if json_mode else answer.text
    text = " ".join(answer.sentences[i] for i in selected) if selected else answer.text
    if not json_mode:
        return text
    key = "summary" if answer.task == "summarize" else "answer"
    payload = {key: text, "keywords": kept, "sentences": len(selected)}
    return json.dumps(payload, ensure_ascii=False)


def _fit(answer: _Answer, json_mode: bool, max_tokens: int | None) -> tuple[str, str]:
    """(text, finish_reason) within ``max_tokens``. JSON drops whole sentences, then
    keywords, to stay valid; what still does not fit is cut, as a real model's would be."""
    selected, keywords = answer.selected, len(answer.keywords)
    text = _render(answer, selected, keywords, json_mode)
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text, "stop"
    while json_mode and count_tokens(text) > max_tokens and (len(selected) > 1 or keywords):
        if len(selected) > 1:
            selected = selected[:-1]
        else:
            keywords -= 1
        text = _render(answer, selected, keywords, json_mode)
    return _truncate(text, max_tokens), "length"


_FILE_NAME = re.compile(r"[\w./-]*\w\.[A-Za-z]\w*")


def _path_tools(request: LLMRequest) -> list[str]:
    """The tools whose parameters require a string ``path``."""
    names = []
    for tool in request.tools:
        schema = tool.parameters
        props = schema.get("properties") or {}
        if (
            "path" in (schema.get("required") or ())
            and (props.get("path") or {}).get("type") == "string"
        ):
            names.append(tool.name)
    return names


def _tool_for(path: str, tools: list[str]) -> str:
    if path.lower().endswith(".csv"):
        preferred = [t for t in tools if "csv" in t.lower()]
    else:
        preferred = [t for t in tools if "read" in t.lower() or "file" in t.lower()]
    return (preferred or tools)[0]


def _tool_calls(request: LLMRequest, message: str) -> tuple[ToolCall, ...]:
    """The next turn's tool calls (see the module docstring), or none: time to answer."""
    if not request.tools or request.tool_choice == "none":
        return ()
    tools = _path_tools(request)
    if request.tool_choice not in (None, "auto", "required"):
        tools = [t for t in tools if t == request.tool_choice]
    if not tools:
        return ()
    made = [c for m in request.messages for c in m.tool_calls]
    done = {(c.name, c.arguments.get("path")) for c in made}
    pending = []
    for path in dict.fromkeys(_FILE_NAME.findall(message)):
        tool = _tool_for(path, tools)
        if (tool, path) not in done:
            pending.append((tool, path))
    if not pending:
        return ()
    first_tool = pending[0][0]
    batch = [path for tool, path in pending if tool == first_tool]
    return tuple(
        ToolCall(f"call_{len(made) + i + 1}", first_tool, {"path": path})
        for i, path in enumerate(batch)
    )


def _truncate(text: str, max_tokens: int) -> str:
    """The prefix of ``text`` holding its first ``max_tokens`` tokens."""
    matches = list(_TOKEN_RE.finditer(text))
    if len(matches) <= max_tokens:
        return text
    return text[: matches[max_tokens - 1].end()]


def _chunks(text: str) -> list[str]:
    """Word chunks whose concatenation is ``text`` (each chunk keeps its leading space)."""
    return [c for c in re.split(r"(?<=\S)(?=\s)", text) if c]


_FAILURES: dict[str, type[ProviderError]] = {
    "server": ServerError,
    "rate_limit": RateLimited,
    "timeout": ProviderTimeout,
    "connection": ProviderConnectionError,
    "request": ProviderRequestError,
    "malformed": MalformedResponse,
}
_STATUS = {"server": 500, "rate_limit": 429, "request": 400}


class OfflineProvider:
    """The offline extractive model as a :class:`~backpackflow_llm.providers.base.Provider`.

    Deterministic: the same request always gives the same text, usage and latency. Accepts
    any model name starting with ``offline-`` (``offline-extractive-1`` is the default name; the
    names differ only in what they report and are priced as, which lets a demo fall back from one
    "model" to another). See the module docstring for the rules and the failure injection.
    ``calls`` counts the calls made, failed ones included.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        fail_first: int = 0,
        fail_models: Collection[str] = (),
        failure: Failure = "server",
        retry_after: float | None = None,
        refusal: str | None = None,
        name: str = "offline",
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if latency_ms < 0 or fail_first < 0:
            raise ValueError("OfflineProvider: latency_ms and fail_first must be >= 0")
        if failure not in _FAILURES:
            raise ValueError(
                f"OfflineProvider: failure must be one of {sorted(_FAILURES)}, got {failure!r}"
            )
        self.name = name
        self.latency_ms = float(latency_ms)
        self.fail_first = fail_first
        self.fail_models = frozenset(fail_models)
        self.failure: Failure = failure
        self.retry_after = retry_after
        self.refusal = refusal
        self.calls = 0
        self._sleep = sleep

    def messages_sent(self, request: LLMRequest) -> list[dict[str, Any]]:
        """What the offline model reads: the system prompt, then the messages."""
        system = [{"role": "system", "content": request.system}] if request.system else []
        return system + [m.to_json() for m in request.messages]

    def __repr__(self) -> str:
        return f"OfflineProvider(name={self.name!r}, latency_ms={self.latency_ms:g})"

    async def complete(
        self, request: LLMRequest, *, on_chunk: OnChunk | None = None
    ) -> LLMResponse:
        self.calls += 1
        model = request.model
        if not model.startswith("offline-"):
            raise ProviderRequestError(
                f"unknown model {model!r}: the offline provider serves only 'offline-*' models",
                provider=self.name,
                model=model,
                hint=f"use model {DEFAULT_MODEL!r}, or route this model to a real provider",
            )
        if self.calls <= self.fail_first or model in self.fail_models:
            raise self._injected(model)
        user = [m.content for m in request.messages if m.role == "user"]
        input_tokens = count_tokens(request.system or "") + sum(
            count_tokens(m.content) for m in request.messages
        )
        calls = _tool_calls(request, user[-1] if user else "")
        if calls:
            output = sum(count_tokens(json.dumps(c.to_json())) for c in calls)
            return LLMResponse(
                text="",
                usage=Usage(input_tokens=input_tokens, output_tokens=output),
                provider=self.name,
                model=model,
                finish_reason="tool_calls",
                latency_ms=self.latency_ms,
                raw={"model_kind": MODEL_KIND, "task": "tool_calls", "tokenizer": TOKENIZER},
                tool_calls=calls,
            )
        if self.refusal is not None:
            if self.latency_ms:
                await self._sleep(self.latency_ms / 1000)
            return LLMResponse(
                text="",
                usage=Usage(input_tokens=input_tokens, output_tokens=count_tokens(self.refusal)),
                provider=self.name,
                model=model,
                finish_reason="refusal",
                latency_ms=self.latency_ms,
                raw={"model_kind": MODEL_KIND, "task": "refusal", "tokenizer": TOKENIZER},
                refusal=self.refusal,
            )
        results = [m.content for m in request.messages if m.role == "tool"]
        source = "\n\n".join([user[-1] if user else "", *results])
        extractor = _Extractor(request.system, source)
        answer = extractor.run()
        text, finish = _fit(answer, request.response_format == "json", request.max_tokens)
        usage = Usage(input_tokens=input_tokens, output_tokens=count_tokens(text))
        if request.stream:
            pieces = _chunks(text)
            delay = self.latency_ms / 1000 / max(1, len(pieces))
            for piece in pieces:
                if delay:
                    await self._sleep(delay)
                if on_chunk is not None:
                    on_chunk(piece)
        elif self.latency_ms:
            await self._sleep(self.latency_ms / 1000)
        return LLMResponse(
            text=text,
            usage=usage,
            provider=self.name,
            model=model,
            finish_reason=finish,
            latency_ms=self.latency_ms,
            raw={
                "model_kind": MODEL_KIND,
                "task": answer.task,
                "selected_sentences": list(answer.selected),
                "source_sentences": len(answer.sentences),
                "tokenizer": TOKENIZER,
            },
        )

    def _injected(self, model: str) -> ProviderError:
        why = (
            f"call {self.calls} of fail_first={self.fail_first}"
            if self.calls <= self.fail_first
            else f"model {model!r} is in fail_models"
        )
        detail = f"injected {self.failure} failure ({why})"
        hint = "this failure was configured on OfflineProvider for a demo or test"
        common: dict[str, Any] = {"provider": self.name, "model": model, "hint": hint}
        if self.failure == "malformed":
            return MalformedResponse(detail, body="<injected>", **common)
        cls = _FAILURES[self.failure]
        return cls(
            detail,
            status=_STATUS.get(self.failure),
            retry_after=self.retry_after if self.failure == "rate_limit" else None,
            **common,
        )
