"""The data generators and the data modules they use import no torch and no transformers, and the models are
registered with the Auto classes in every import order that involves transformers (fresh interpreters): the
package first, transformers first, a model module first, the shared tokenizer module first."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, env

MODEL_TYPES = [
    "hfe_gpt",
    "blotch",
    "hfe_compression",
    "hfe_mlp",
    "hfe_module",
    "hfe_recurrent",
    "hfe_recurrent_intervention",
]
# What the registration leaves behind, read after the import lines under test.
_CHECK = """
import json
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING
from hf_experiments.arrows.configuration_gpt import GPTConfig
from hf_experiments.arrows.modeling_gpt import GPTForCausalLM
_as_tuple = lambda t: t if isinstance(t, tuple) else (t,)  # one class in transformers 5, a (slow, fast) pair before
print("RESULT " + json.dumps({
    "types": [t for t in %r if t in CONFIG_MAPPING],
    "auto_class": GPTForCausalLM._auto_class,
    "tokenizer": [c.__name__ for c in _as_tuple(TOKENIZER_MAPPING[GPTConfig]) if c],
}))
"""


def _python(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.split("RESULT ", 1)[1])


@pytest.mark.parametrize(
    "module",
    [
        "hf_experiments.arrows.primes",
        "hf_experiments.arrows.linear_language",
        "hf_experiments.recurrent.repeat_data",
        "hf_experiments.blotch.arithmetic",
        "hf_experiments.core.dataset_io",
    ],
)
def test_data_modules_import_without_torch_or_transformers(module):
    got = _python(
        f"import sys, json, {module}\n"
        "print('RESULT ' + json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))"
    )
    assert got == []


@pytest.mark.parametrize("script", ["make_primes", "make_linear", "make_repeat", "make_arithmetic"])
def test_generator_scripts_import_without_torch_or_transformers(script):
    got = _python(
        "import runpy, sys, json\n"
        f"sys.argv = ['{script}', '--help']\n"
        "try:\n"
        f"    runpy.run_path('data_scripts/{script}.py', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('RESULT ' + json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))"
    )
    assert got == []


@pytest.mark.parametrize(
    "first",
    [
        "import hf_experiments\nimport transformers",
        "import transformers\nimport hf_experiments.arrows.primes",
        "from hf_experiments.arrows import GPTForCausalLM",
        "from hf_experiments.arrows.configuration_gpt import GPTConfig",
        "from hf_experiments.core.tokenization_char import CharTokenizer",
        "import hf_experiments.arrows.primes\nfrom hf_experiments.core.config import RunConfig",
    ],
    ids=["package-then-transformers", "transformers-first", "model", "config", "tokenizer", "data-then-core"],
)
def test_models_are_registered_in_every_import_order(first):
    got = _python(first + "\n" + _CHECK % MODEL_TYPES)
    assert got["types"] == MODEL_TYPES
    assert got["auto_class"] == "AutoModelForCausalLM"
    assert "CharTokenizerFast" in got["tokenizer"]
