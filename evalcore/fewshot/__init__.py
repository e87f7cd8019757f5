"""Few-shot NLU benchmarks (FewNLU protocol on FewGLUE) for any model behind ``lm.LanguageModel``.

The command line that loads a model and runs them is ``python -m models_zoo.evaluate``.

Heavy modules load lazily: importing this package (or ``evalcore.fewshot.schema``) pulls in
neither torch nor numpy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LanguageModel", "run_fewshot", "run_probe", "validate_results"]


def __getattr__(name: str) -> Any:
    if name == "run_fewshot":
        from evalcore.fewshot.runner import run_fewshot

        return run_fewshot
    if name == "run_probe":
        from evalcore.fewshot.probe import run_probe

        return run_probe
    if name == "LanguageModel":
        from evalcore.fewshot.lm import LanguageModel

        return LanguageModel
    if name == "validate_results":
        from evalcore.fewshot.schema import validate_results

        return validate_results
    raise AttributeError(f"module 'evalcore.fewshot' has no attribute {name!r}")
