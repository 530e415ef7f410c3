"""Arrows of time: a GPT on prime-product and GF(2) linear-language lines, read forward or backward. Importing the
package registers the GPT with the Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_experiments.core.tokenization_char import CharTokenizer

from .configuration_gpt import GPTConfig, gpt_preset
from .modeling_gpt import GPTForCausalLM


def _register() -> None:
    """Idempotent (``exist_ok=True``): re-imports, reloads and test collection never double-register."""
    AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)
    AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)
    AutoTokenizer.register(GPTConfig, tokenizer_class=CharTokenizer, exist_ok=True)


_register()

__all__ = ["CharTokenizer", "GPTConfig", "GPTForCausalLM", "gpt_preset"]
