"""Semantic blotching: step-by-step arithmetic with blotched (dropped) solution steps, and training that rewrites
its own data (`self_training/`). Importing `hf_experiments` registers the blotch model with the Auto classes."""

from __future__ import annotations

from hf_experiments.core.lazy_names import lazy_getattr

# The package's names, imported on first use (PEP 562): its data modules (generators, loaders) then import
# without torch or transformers; `hf_experiments/__init__.py` registers the models with the Auto classes.
_LAZY = {
    "POSENC_TYPES": ".configuration_blotch",
    "BlotchConfig": ".configuration_blotch",
    "BlotchModel": ".modeling_blotch",
    "BlotchPositionalEncoding": ".modeling_blotch",
    "causal_lm_loss": ".modeling_blotch",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = sorted(_LAZY)
