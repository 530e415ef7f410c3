"""Context compression: trained vectors stand in for a context while a causal LM predicts what follows. Importing
`hf_experiments` registers the compression model with `AutoConfig`, `AutoModel` and `AutoModelForCausalLM`.

`register_for_auto_class` makes `save_pretrained` write `auto_map` and copy the configuration and modeling files
beside the weights: the folder then loads with `trust_remote_code=True` where this package is not installed (and
without it where it is: the registered classes win)."""

from __future__ import annotations

from hf_experiments.core.lazy_names import lazy_getattr

# The package's names, imported on first use (PEP 562): its data modules (generators, loaders) then import
# without torch or transformers; `hf_experiments/__init__.py` registers the models with the Auto classes.
_LAZY = {
    "CompressionConfig": ".configuration_compression",
    "CompressionModel": ".modeling_compression",
    "CompressionOutput": ".modeling_compression",
    "resolve_cmp_layer": ".modeling_compression",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = sorted(_LAZY)
