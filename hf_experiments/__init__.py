"""hf_experiments: five research training setups on the Hugging Face `Trainer`.

Importing the package registers its models with the Auto classes, so `AutoModel*.from_pretrained(path)`
loads any model this package saved.
"""

__version__ = "0.1.0"


def _register_models() -> None:
    import importlib
    import pkgutil

    from . import models

    for mod in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"{models.__name__}.{mod.name}")


_register_models()
