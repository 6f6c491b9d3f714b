"""A tiny, randomly initialised causal LM and tokenizer on disk, for fast offline tests.

``build_tiny_model(path)`` writes a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load: a 2-layer Llama (hidden size 64) with safetensors
weights, and a byte-level BPE tokenizer trained here on a small built-in text, with ChatML
special tokens and a ChatML chat template. Same arguments, same bytes on disk, every time.
Building one takes well under a second; nothing is downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

BOS = "<|im_start|>"
EOS = "<|im_end|>"
PAD = "<|pad|>"
UNK = "<|endoftext|>"

#: A minimal ChatML template (the format of SmolLM2, Qwen and others).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = "\n".join(
    [
        "# Example 1",
        "## Question ",
        "What should I cook for dinner tonight?",
        "## Preferred Response ",
        "A quick vegetable curry with rice: warm, filling and ready in thirty minutes.",
        "## Dispreferred Response ",
        "A slow-roasted leg of lamb with rosemary and garlic.",
        "",
        "# Task",
        "Given the examples above, generate a preferred response to the following question.",
        "## Question ",
        "Which book would you recommend for a long train ride?",
        "## User Description",
        "The user is a vegetarian who likes short answers, science fiction and cycling.",
        "The quick brown fox jumps over the lazy dog. Hello world! 0123456789",
        "Explain like I'm five: why is the sky blue? Because sunlight scatters in the air.",
        "",
    ]
)


def build_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer (any text encodes) wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    path: str | Path,
    *,
    seed: int = 0,
    num_layers: int = 2,
    hidden_size: int = 64,
    pad_token: bool = True,
    chat_template: bool = True,
) -> Path:
    """Write a tiny random Llama and its tokenizer to ``path``; return the folder.

    ``seed`` picks the random weights (a different seed gives a different model);
    ``pad_token=False`` leaves the tokenizer without a pad token and ``chat_template=False``
    without a chat template, for testing how a backend copes.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    if not pad_token:
        tokenizer.pad_token = None
    if not chat_template:
        tokenizer.chat_template = None
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        # Larger than the usual 0.02 so that the random logits are peaked, not near-uniform:
        # greedy choices then have clear margins over floating-point noise.
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with _quiet():
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_lora_adapter(
    base: str | Path,
    path: str | Path,
    *,
    seed: int = 1,
    scale: float = 0.5,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"),
) -> Path:
    """Write a PEFT LoRA adapter (safetensors) for the tiny model at ``base`` to ``path``.

    A fresh LoRA adapter is a no-op (its B matrices start at zero), so every LoRA weight is
    replaced with seeded noise of standard deviation ``scale``: the adapter changes outputs.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = Path(path)
    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(target_modules), lora_dropout=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    with warnings.catch_warnings():  # peft calls a deprecated transformers helper when saving
        warnings.simplefilter("ignore", FutureWarning)
        peft_model.save_pretrained(path)
    return path


class _quiet:
    """Hide transformers' progress bars while saving or loading."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        if self.enabled:
            hf_logging.enable_progress_bar()
