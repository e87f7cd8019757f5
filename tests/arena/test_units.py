"""Pure pieces: pair sampling weights, the language tag, Markdown rendering."""

from __future__ import annotations

import random
from collections import Counter
from html.parser import HTMLParser

import pytest

from arena.language import detect_language
from arena.rendering import render_markdown
from arena.sampling import PairRecord, pair_weight, sample_pair


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def test_new_pairs_outweigh_pairs_with_many_votes() -> None:
    assert pair_weight(PairRecord()) > pair_weight(PairRecord(votes=100, first_wins=50))
    assert pair_weight(PairRecord()) == pytest.approx(1.5)


def test_close_pairs_outweigh_one_sided_pairs_with_as_many_votes() -> None:
    even = pair_weight(PairRecord(votes=100, first_wins=50))
    one_sided = pair_weight(PairRecord(votes=100, first_wins=95))
    assert even > one_sided > 0
    assert pair_weight(PairRecord(votes=100, first_wins=5)) == pytest.approx(one_sided)


def test_sample_pair_is_distinct_seeded_and_follows_the_weights() -> None:
    ids = [1, 2, 3]
    records = {(1, 2): PairRecord(votes=1000, first_wins=990)}  # played out and one-sided
    draws = [sample_pair(ids, records, random.Random(seed)) for seed in range(3000)]
    assert all(a != b for a, b in draws)
    pairs = Counter(tuple(sorted(pair)) for pair in draws)
    assert pairs[(1, 2)] < pairs[(1, 3)] / 5
    assert 0.45 < sum(a < b for a, b in draws) / len(draws) < 0.55  # sides are shuffled
    assert draws[:10] == [sample_pair(ids, records, random.Random(s)) for s in range(10)]


def test_sample_pair_needs_two_candidates() -> None:
    with pytest.raises(ValueError, match="at least two"):
        sample_pair([7, 7], {}, random.Random(0))


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Why is the sky blue?", "English"),
        ("Explain recursion", "English"),
        ("Écris un petit poème sur la pluie.", "French"),
        ("Erkläre, was eine Funktion ist und wie sie funktioniert.", "German"),
        ("¿Por qué el cielo es azul?", "Spanish"),
        ("请解释一下什么是递归。", "Chinese"),
        ("日本語で説明してください", "Japanese"),
        ("Привет, как дела?", "Russian"),
        ("1234 !!", "unknown"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        "<iframe src=//evil></iframe>",
        "```html\n<script>alert(1)</script>\n```",
        '<div onclick="alert(1)">x</div>',
    ],
)
def test_markdown_rendering_never_emits_active_html(attack: str) -> None:
    tags = TagCollector()
    tags.feed(render_markdown(attack))
    for tag, attributes in tags.found:
        assert tag in ("p", "a", "pre", "code"), tag
        for name, value in attributes:
            assert not name.startswith("on")
            assert not (value or "").lower().startswith("javascript:")


def test_markdown_renders_code_lists_and_safe_links() -> None:
    html = render_markdown("- one\n- two\n\n```\nx < 1\n```\n\n[doc](https://example.org)")
    assert "<li>one</li>" in html
    assert "x &lt; 1" in html
    assert 'href="https://example.org"' in html and 'rel="nofollow noopener noreferrer"' in html
