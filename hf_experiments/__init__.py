"""hf_experiments: five research training setups on the Hugging Face `Trainer`.

Importing the package registers its models with the Auto classes, so `AutoModel*.from_pretrained(path)`
loads any model this package saved. A saved folder also carries its configuration and modeling code (`auto_map`),
so where the package is not installed it loads with `trust_remote_code=True`.
"""

__version__ = "0.1.0"

# Each experiment package registers its model classes when imported.
_MODEL_PACKAGES = ("arrows", "blotch", "compression", "mlp", "recurrent")


def _register_models() -> None:
    import importlib

    for name in _MODEL_PACKAGES:
        importlib.import_module(f"{__name__}.{name}")


_register_models()
