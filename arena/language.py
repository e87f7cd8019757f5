"""A small language tag for a prompt, for per-language boards and the export's ``language``.

Scripts decide most languages (kana → Japanese, Hangul → Korean, Han → Chinese, ...). Latin-script
text is told apart by counting very common function words. Text with no hit is "English" when it
is plain ASCII, else "unknown", like the public dumps' undetected prompts; names follow those
dumps ("English", "Chinese", ...).
"""

from __future__ import annotations

import re

UNKNOWN = "unknown"
SCRIPTS = (  # (language, regex of its characters); the first script with enough letters wins
    ("Japanese", re.compile(r"[\u3040-\u30ff]")),
    ("Korean", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("Chinese", re.compile(r"[\u4e00-\u9fff]")),
    ("Russian", re.compile(r"[\u0400-\u04ff]")),
    ("Arabic", re.compile(r"[\u0600-\u06ff]")),
    ("Hebrew", re.compile(r"[\u0590-\u05ff]")),
    ("Hindi", re.compile(r"[\u0900-\u097f]")),
    ("Greek", re.compile(r"[\u0370-\u03ff]")),
    ("Thai", re.compile(r"[\u0e00-\u0e7f]")),
)
FUNCTION_WORDS = {
    "English": (
        "the a an and or is are was of to in that it for with what how you i do does this be on not"
        " can why which who should"
    ),
    "French": "le la les des est et une un que qui pour dans pas sur avec vous ce je",
    "German": "der die das und ist nicht ein eine ich zu mit den von sie auf für wie",
    "Spanish": "el la los las es y que de en un una por para con no se cómo qué",
    "Portuguese": "o a os as é e que de em um uma para com não se como você",
    "Italian": "il la lo gli è e che di un una per con non si come sono",
}
_WORDS = {language: set(words.split()) for language, words in FUNCTION_WORDS.items()}
_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)


def detect_language(text: str) -> str:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return UNKNOWN
    for language, pattern in SCRIPTS:
        if len(pattern.findall(text)) >= max(1, len(letters) // 5):
            return language
    tokens = [token.lower() for token in _TOKEN.findall(text)]
    scores = {language: sum(t in words for t in tokens) for language, words in _WORDS.items()}
    best = max(scores.values())
    if best == 0:
        # Short prompts ("Explain recursion") have no function word; plain ASCII is most likely English.
        return "English" if text.isascii() else UNKNOWN
    return max(scores, key=lambda language: scores[language])  # a tie goes to the first listed
