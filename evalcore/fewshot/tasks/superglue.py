"""The FewGLUE (SuperGLUE) tasks: label maps, patterns, verbalizers, probe inputs.

Pattern ``lm`` of each task copies the lm-evaluation-harness ``super_glue`` prompt (v0.4.x
YAMLs) so that our numbers can be checked against the harness on the same model; the second
pattern is a PET-style question (Schick & Schütze 2021, the FewGLUE authors). Label encodings
follow the local JSONL files (booleans, strings, 0/1 ints, per-answer labels), see
``shared/data/fewglue/SOURCE.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalcore.fewshot.spec import Doc, Pattern, ProbePattern, TaskSpec

# The FewGLUE tasks, in declaration order; ``evalcore.fewshot.registry`` registers them.
TASKS: list[TaskSpec] = []


def declare(spec: TaskSpec) -> TaskSpec:
    TASKS.append(spec)
    return spec


YES_NO = {"true": " yes", "false": " no"}
BINARY = ("true", "false")


def _bool_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in (0, 1):
        return "true" if value == 1 else "false"
    raise ValueError(f"expected a boolean label, got {value!r}")


def _string_label(allowed: tuple[str, ...]) -> Any:
    def convert(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected a label in {allowed}, got {value!r}")
        return str(value)

    return convert


def _simple_docs(keys: tuple[str, ...], label: Any, labels: tuple[str, ...]) -> Any:
    def to_docs(record: Mapping[str, Any], index: int) -> list[Doc]:
        fields = {key: str(record[key]).strip() for key in keys}
        return [
            Doc(
                uid=str(index),
                record=index,
                fields=fields,
                label=label(record["label"]),
                choices=labels,
                question=str(index),
            )
        ]

    return to_docs


# --- BoolQ ---------------------------------------------------------------------------------

declare(
    TaskSpec(
        name="boolq",
        directory="BoolQ",
        version=1,
        labels=BINARY,
        metrics=("accuracy",),
        patterns=(
            Pattern("lm", "{passage}\nQuestion: {question}?\nAnswer:", YES_NO),
            Pattern(
                "pet",
                "Passage: {passage}\nQuestion: {question}? Yes or no?\nAnswer:",
                {"true": " Yes", "false": " No"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{question}?", "{passage}"),
            ProbePattern("joint", "{question}? {passage}"),
        ),
        to_docs=_simple_docs(("passage", "question"), _bool_label, BINARY),
    )
)

# --- CB ------------------------------------------------------------------------------------

CB_LABELS = ("entailment", "contradiction", "neutral")
declare(
    TaskSpec(
        name="cb",
        directory="CB",
        version=1,
        labels=CB_LABELS,
        metrics=("accuracy", "f1_macro"),
        patterns=(
            Pattern(
                "lm",
                "{premise}\nQuestion: {hypothesis}. True, False, or Neither?\nAnswer:",
                {"entailment": " True", "contradiction": " False", "neutral": " Neither"},
            ),
            Pattern(
                "pet",
                '{premise}\nQuestion: Is it true that "{hypothesis}"? Yes, no, or maybe?\nAnswer:',
                {"entailment": " Yes", "contradiction": " No", "neutral": " Maybe"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{premise}", "{hypothesis}"),
            ProbePattern("joint", "{premise} Hypothesis: {hypothesis}"),
        ),
        to_docs=_simple_docs(("premise", "hypothesis"), _string_label(CB_LABELS), CB_LABELS),
    )
)

# --- COPA ----------------------------------------------------------------------------------

COPA_CHOICES = ("choice1", "choice2")
COPA_CONNECTOR = {"cause": "because", "effect": "therefore"}


def _copa_docs(record: Mapping[str, Any], index: int) -> list[Doc]:
    premise = str(record["premise"]).strip()
    fields = {
        "premise": premise,
        # lm-eval drops the premise's final period and appends the connector.
        "premise_connector": f"{premise[:-1]} {COPA_CONNECTOR[record['question']]}",
        "question": str(record["question"]),
    }
    for key in COPA_CHOICES:
        text = str(record[key]).strip()
        fields[key] = text
        fields[f"{key}_lower"] = text[:1].lower() + text[1:]
    label = {0: "choice1", 1: "choice2"}.get(record["label"])
    if label is None:
        raise ValueError(f"COPA label must be 0 or 1, got {record['label']!r}")
    return [Doc(str(index), index, fields, label, COPA_CHOICES, str(index))]


declare(
    TaskSpec(
        name="copa",
        directory="COPA",
        version=1,
        labels=(),
        metrics=("accuracy",),
        patterns=(
            Pattern(
                "lm",
                "{premise_connector}",
                {"choice1": " {choice1_lower}", "choice2": " {choice2_lower}"},
            ),
            Pattern(
                "pet",
                "{premise}\nWhat was the {question}?\nAnswer:",
                {"choice1": " {choice1}", "choice2": " {choice2}"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{premise_connector}", "{choice}"),
            ProbePattern("joint", "{premise_connector} {choice}"),
        ),
        to_docs=_copa_docs,
        is_option_task=True,
        # FewNLU groups COPA by premise before splitting (mirrored cause/effect items).
        group_by=lambda record: str(record["premise"]),
    )
)

# --- RTE -----------------------------------------------------------------------------------

RTE_LABELS = ("entailment", "not_entailment")
declare(
    TaskSpec(
        name="rte",
        directory="RTE",
        version=1,
        labels=RTE_LABELS,
        metrics=("accuracy",),
        patterns=(
            Pattern(
                "lm",
                "{premise}\nQuestion: {hypothesis} True or False?\nAnswer:",
                {"entailment": " True", "not_entailment": " False"},
            ),
            Pattern(
                "pet",
                '{premise}\nQuestion: Does this imply that "{hypothesis}"? Yes or no?\nAnswer:',
                {"entailment": " Yes", "not_entailment": " No"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{premise}", "{hypothesis}"),
            ProbePattern("joint", "{premise} Hypothesis: {hypothesis}"),
        ),
        to_docs=_simple_docs(("premise", "hypothesis"), _string_label(RTE_LABELS), RTE_LABELS),
    )
)

# --- WiC -----------------------------------------------------------------------------------


def _wic_docs(record: Mapping[str, Any], index: int) -> list[Doc]:
    sentence1 = str(record["sentence1"])
    fields = {
        "sentence1": sentence1.strip(),
        "sentence2": str(record["sentence2"]).strip(),
        "word": str(record["word"]),
        # lm-eval quotes the surface form in sentence 1, not the lemma.
        "word_in_1": sentence1[int(record["start1"]) : int(record["end1"])],
    }
    return [Doc(str(index), index, fields, _bool_label(record["label"]), BINARY, str(index))]


declare(
    TaskSpec(
        name="wic",
        directory="WiC",
        version=1,
        labels=BINARY,
        metrics=("accuracy",),
        patterns=(
            Pattern(
                "lm",
                "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Is the word "
                "'{word_in_1}' used in the same way in the two sentences above?\nAnswer:",
                YES_NO,
            ),
            Pattern(
                "pet",
                '"{sentence1}" / "{sentence2}"\nQuestion: Does "{word}" have the same meaning '
                "in both sentences? Yes or no?\nAnswer:",
                {"true": " Yes", "false": " No"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{word}: {sentence1}", "{word}: {sentence2}"),
            ProbePattern("joint", "{word}: {sentence1} {sentence2}"),
        ),
        to_docs=_wic_docs,
    )
)

# --- WSC -----------------------------------------------------------------------------------


def _wsc_docs(record: Mapping[str, Any], index: int) -> list[Doc]:
    target = record["target"]
    fields = {
        "text": str(record["text"]).strip(),
        "span1": str(target["span1_text"]),
        "span2": str(target["span2_text"]),
    }
    return [Doc(str(index), index, fields, _bool_label(record["label"]), BINARY, str(index))]


declare(
    TaskSpec(
        name="wsc",
        directory="WSC",
        version=1,
        labels=BINARY,
        metrics=("accuracy",),
        patterns=(
            Pattern(
                "lm",
                'Passage: {text}\nQuestion: In the passage above, does the pronoun "*{span2}*" '
                'refer to "*{span1}*"?\nAnswer:',
                YES_NO,
            ),
            Pattern(
                "pet",
                '{text}\nQuestion: In the previous sentence, does "{span2}" refer to "{span1}"? '
                "Yes or no?\nAnswer:",
                {"true": " Yes", "false": " No"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{text}", "{span2} refers to {span1}"),
            ProbePattern("joint", "{text} Here, {span2} refers to {span1}."),
        ),
        to_docs=_wsc_docs,
        # The same text comes back with other spans; keep those in one split half (FewNLU).
        group_by=lambda record: str(record["text"]),
    )
)

# --- MultiRC -------------------------------------------------------------------------------


def _multirc_docs(record: Mapping[str, Any], index: int) -> list[Doc]:
    paragraph = str(record["passage"]["text"]).strip()
    docs = []
    for question in record["passage"]["questions"]:
        question_id = f"{index}-q{question['idx']}"
        for answer in question["answers"]:
            fields = {
                "paragraph": paragraph,
                "question": str(question["question"]).strip(),
                "answer": str(answer["text"]).strip(),
            }
            docs.append(
                Doc(
                    uid=f"{question_id}-a{answer['idx']}",
                    record=index,
                    fields=fields,
                    label=_bool_label(answer["label"]),
                    choices=BINARY,
                    question=question_id,
                )
            )
    return docs


declare(
    TaskSpec(
        name="multirc",
        directory="MultiRC",
        version=1,
        labels=BINARY,
        metrics=("f1a", "exact_match"),
        patterns=(
            # lm-eval puts the answer in both continuations (they differ only in yes/no); moving
            # it into the context gives the same argmax for raw scores and one-token choices.
            Pattern(
                "lm",
                "{paragraph}\nQuestion: {question}\nAnswer: {answer}\nIs the answer correct?",
                YES_NO,
            ),
            Pattern(
                "pet",
                '{paragraph}\nQuestion: {question}\nIs "{answer}" a correct answer? Yes or no?\n'
                "Answer:",
                {"true": " Yes", "false": " No"},
            ),
        ),
        probe_patterns=(
            ProbePattern("pair", "{paragraph} {question}", "{question} {answer}"),
            # Paragraph-free: embedding the paragraph once per option would cost 5x more.
            ProbePattern("answer", "{question} {answer}"),
        ),
        to_docs=_multirc_docs,
    )
)
