"""Register the zoo's configs and models with transformers' Auto classes (idempotent)."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
from models_zoo.decoder import DecoderConfig, DecoderForCausalLM
from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM

ZOO_MODELS: dict[str, tuple[type[DecoderConfig], type[DecoderForCausalLM]]] = {
    DenseConfig.model_type: (DenseConfig, DenseForCausalLM),
    LongNetConfig.model_type: (LongNetConfig, LongNetForCausalLM),
}


def register_zoo_models() -> None:
    """Make ``AutoConfig``/``AutoModelForCausalLM`` resolve the zoo's ``model_type``s."""
    for model_type, (config_class, model_class) in ZOO_MODELS.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)


register_zoo_models()
