"""CUDA checks of the fast decoder at the sizes teams submit, and of the zoo's models on it."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM
from models_zoo.fast_decode import clear_caches, generate_fast
from models_zoo.quantization import quantize_model_int8

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

# Llama shapes of the serving bench; the 8B shape keeps 2 of its 32 layers to bound the time.
SIZES = {
    "134m": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
             "num_attention_heads": 12, "num_key_value_heads": 12, "vocab_size": 32000},
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
           "tie_word_embeddings": True},
    "8b-2layers": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 2,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                   "rope_theta": 500000.0},
}  # fmt: skip


@pytest.fixture(autouse=True)
def exact_fp32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.mark.parametrize("size", list(SIZES))
def test_fp32_greedy_tokens_equal_transformers_at_serving_sizes(size: str) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        **SIZES[size], max_position_embeddings=256, pad_token_id=0, eos_token_id=None,
        bos_token_id=None,
    )  # fmt: skip
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).eval()
    ids = torch.randint(1, config.vocab_size, (2, 16), device="cuda")
    expected = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, min_new_tokens=16,
        do_sample=False, pad_token_id=0,
    )[:, 16:]  # fmt: skip
    graphed = generate_fast(model, ids, max_new_tokens=16)
    assert graphed.tolist() == expected.tolist()
    clear_caches()
    del model
    torch.cuda.empty_cache()


def zoo(arch: str) -> DenseForCausalLM | LongNetForCausalLM:
    torch.manual_seed(1)
    sizes = {"vocab_size": 512, "hidden_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 512, "max_position_embeddings": 4096}  # fmt: skip
    if arch == "dense":
        return DenseForCausalLM(DenseConfig(**sizes)).cuda().eval()
    config = LongNetConfig(segment_lengths=[64, 128, 256], dilation_rates=[1, 2, 4], **sizes)
    return LongNetForCausalLM(config).cuda().eval()


@pytest.mark.parametrize("arch", ["dense", "longnet"])
def test_zoo_cuda_graph_decoding_equals_the_plain_path(arch: str) -> None:
    model = zoo(arch)
    ids = torch.randint(1, 512, (2, 300), device="cuda")
    expected = model.generate(ids, max_new_tokens=40, min_new_tokens=40, do_sample=False)
    graphed = generate_fast(model, ids, max_new_tokens=40)
    eager = generate_fast(model, ids, max_new_tokens=40, use_cuda_graph=False)
    assert torch.equal(graphed, eager)
    assert graphed.tolist() == expected[:, 300:].tolist()


def test_zoo_bf16_int8_longnet_graph_equals_eager() -> None:
    model = quantize_model_int8(zoo("longnet").to(torch.bfloat16), block_size=64)
    ids = torch.randint(1, 512, (3, 200), device="cuda")
    graphed = generate_fast(model, ids, max_new_tokens=24)
    eager = generate_fast(model, ids, max_new_tokens=24, use_cuda_graph=False)
    assert torch.equal(graphed, eager)


@pytest.mark.parametrize("arch", ["chat-llama", "dense", "longnet"])
def test_cuda_chat_answers_through_the_graph_step_equal_the_plain_path(
    arch: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models_zoo import chat, serving
    from models_zoo.testing import make_tiny_chat_checkpoint, make_tiny_checkpoint

    folder = tmp_path_factory.mktemp(f"cuda-chat-{arch}") / arch
    if arch == "chat-llama":
        path = make_tiny_chat_checkpoint(folder)
    else:
        path = make_tiny_checkpoint(folder, arch=arch)
    served = serving.load(path, device="cuda", dtype="float32")
    assert served.use_fast_chat  # CUDA: the captured decode step
    messages = [{"role": "user", "content": "Name a colour."}]
    prompt, tokens = chat.render_within(served.tokenizer, messages, budget_tokens=400)
    for settings in (
        chat.ChatSettings(max_new_tokens=24),
        chat.ChatSettings(max_new_tokens=24, temperature=1.0, seed=5),
    ):
        answers, streamed = {}, {True: [], False: []}
        for use_fast in (True, False):
            monkeypatch.setattr(served, "use_fast_chat", use_fast)
            answers[use_fast] = chat._decode(
                served, prompt, tokens, settings, (), streamed[use_fast].append
            )
        assert answers[True].token_ids == answers[False].token_ids
        assert len(answers[True].token_ids) == 24
        assert streamed[True] == streamed[False]
    # A second answer reuses the captured graph of the same length bucket.
    monkeypatch.setattr(served, "use_fast_chat", True)
    again = chat._decode(served, prompt, tokens, chat.ChatSettings(max_new_tokens=24), (), None)
    first = chat._decode(served, prompt, tokens, chat.ChatSettings(max_new_tokens=24), (), None)
    assert again.token_ids == first.token_ids
    clear_caches()
