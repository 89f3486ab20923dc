"""The params classes of the node types and the options of the ``stopwords`` factory.

These classes are the package's contract with flow authors: the loader structures a node's
``params`` into them, and ``backpackflow schema export`` turns them into JSON Schema through
msgspec, so every constraint and description written here is enforced at load time and shown
to editors and CI. Constraints live in ``Annotated[..., msgspec.Meta(...)]``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import attrs
from msgspec import Meta

#: A Backpack key: non-empty, no surrounding white space, no ``*`` (the Backpack's own rules).
#: The pattern accepts "" so that an empty key gets the one, clearer, ``minLength`` error.
Key = Annotated[str, Meta(min_length=1, pattern=r"^(?:[^\s*](?:[^*]*[^\s*])?)?$")]
#: An action a node returns; edges select it with ``"condition"``.
Action = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Keyword = Annotated[str, Meta(min_length=1, max_length=200)]


# ------------------------------------------------------------------------------- text_stats


@attrs.frozen(kw_only=True)
class TextStatsParams:
    """Params of ``text_stats``: which Backpack key to measure and where to write the figures."""

    source: Annotated[
        Key,
        Meta(description="Backpack key of the text: a string, or a list of strings (paragraphs)."),
    ]
    target: (
        Annotated[
            Key,
            Meta(description="Backpack key to write the figures to (default: '<source>_stats')."),
        ]
        | None
    ) = None
    words_per_minute: Annotated[
        int,
        Meta(
            ge=50,
            le=1000,
            description="Reading speed behind reading_time_seconds (238: adult silent reading).",
        ),
    ] = 238
    min_words: (
        Annotated[
            int,
            Meta(ge=1, description="Fewer words than this make the node return 'too_short'."),
        ]
        | None
    ) = None


# ------------------------------------------------------------------------------- keyword_router


def _unique_route_names(_: Any, __: Any, routes: list[Route]) -> None:
    names = [route.name for route in routes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"routes: each route name must be unique, repeated: {repeated}")


@attrs.frozen(kw_only=True)
class Route:
    """One branch of ``keyword_router``: the action it returns and the keywords selecting it."""

    name: Annotated[
        Action,
        Meta(description="The action returned when this route wins; edges select it by name."),
    ]
    keywords: Annotated[
        list[Keyword],
        Meta(min_length=1, description="Words or phrases that count as hits for this route."),
    ]


@attrs.frozen(kw_only=True)
class KeywordRouterParams:
    """Params of ``keyword_router``: the text to classify and the routes to choose from."""

    source: Annotated[
        Key,
        Meta(description="Backpack key of the text: a string, or a list of strings (paragraphs)."),
    ]
    routes: Annotated[
        list[Route],
        Meta(min_length=1, description="Candidate routes, in priority order."),
    ] = attrs.field(validator=_unique_route_names)
    strategy: Annotated[
        Literal["first", "most_hits"],
        Meta(
            description="'first': the first route with enough hits wins; 'most_hits': the route "
            "with the most hits wins (ties go to the earlier route)."
        ),
    ] = "most_hits"
    match: Annotated[
        Literal["word", "substring"],
        Meta(description="'word': keywords match whole words or phrases; 'substring': anywhere."),
    ] = "word"
    case_sensitive: bool = False
    min_hits: Annotated[
        int,
        Meta(ge=1, le=1000, description="Hits a route needs before it can win."),
    ] = 1
    fallback: Annotated[
        Action,
        Meta(description="The action returned when no route has enough hits."),
    ] = "default"
    target: (
        Annotated[
            Key,
            Meta(description="Backpack key to write the decision to (branch, hits, matched)."),
        ]
        | None
    ) = None


# ------------------------------------------------------------------------------- extract_keywords


@attrs.frozen(kw_only=True)
class ExtractKeywordsParams:
    """Params of ``extract_keywords``: the text, where to write its keywords, and how many."""

    source: Annotated[
        Key,
        Meta(description="Backpack key of the text: a string, or a list of strings (paragraphs)."),
    ]
    target: Annotated[
        Key,
        Meta(description="Backpack key to write the keywords to: [{term, count}, ...]."),
    ] = "keywords"
    top_k: Annotated[int, Meta(ge=1, le=100, description="How many keywords to keep.")] = 10
    min_length: Annotated[
        int,
        Meta(ge=1, le=50, description="Shorter words are never keywords."),
    ] = 3
    min_count: Annotated[
        int,
        Meta(ge=1, description="A word must occur this many times to be a keyword."),
    ] = 1
    include_numbers: Annotated[
        bool,
        Meta(description="Whether numbers (e.g. '2024') can be keywords."),
    ] = False


# ------------------------------------------------------------------------------- stopwords


@attrs.frozen(kw_only=True)
class StopwordsOptions:
    """Config of the ``stopwords`` dependency factory (a flow's ``dependencies`` entry)."""

    builtin: Literal["english", "none"] = "english"
    #: A text file, one word per line; ``#`` starts a comment. Relative paths are relative to
    #: the working directory of the process that runs the flow.
    path: str | None = None
    words: list[str] = attrs.field(factory=list)
    keep: list[str] = attrs.field(factory=list)
    encoding: str = "utf-8"
