"""Arrows of time: a GPT on prime-product and GF(2) linear-language lines, read forward or backward. Importing
`hf_experiments` registers the GPT with the Auto classes."""

from __future__ import annotations

from hf_experiments.core.lazy_names import lazy_getattr

# The package's names, imported on first use (PEP 562): its data modules (generators, loaders) then import
# without torch or transformers; `hf_experiments/__init__.py` registers the models with the Auto classes.
_LAZY = {
    "CharTokenizer": "hf_experiments.core.tokenization_char",
    "GPTConfig": ".configuration_gpt",
    "gpt_preset": ".configuration_gpt",
    "GPTForCausalLM": ".modeling_gpt",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = sorted(_LAZY)
