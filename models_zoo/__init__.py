"""Ladder's model zoo: LongNet-style and dense language models, demo checkpoints, serving.

Importing the package registers the zoo architectures with transformers' Auto classes. Pure
PyTorch + transformers; never imports the web stack.
"""

from __future__ import annotations

from models_zoo import registry as _registry  # noqa: F401  (registration side effect)
