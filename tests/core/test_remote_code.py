"""Saved model folders are Hub-ready custom code: each family's folder holds `auto_map` and its configuration and
modeling files, which import only torch, transformers, the standard library, what transformers depends on and
each other; a fresh process in which `hf_experiments` cannot be imported loads every folder through
`AutoConfig` / `AutoModel*` with `trust_remote_code=True` and gets the same outputs as the model that was saved;
with the package imported the same folders load without `trust_remote_code` (the registered classes win).

The models are tiny and untrained, built from their configs (a real run's folder is checked once, with the MLP)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel
from transformers.dynamic_module_utils import get_imports

from hf_experiments.arrows import GPTConfig, GPTForCausalLM
from hf_experiments.blotch import BlotchConfig, BlotchModel
from hf_experiments.compression import CompressionConfig, CompressionModel
from hf_experiments.compression.modeling_compression import bundle_backbone
from hf_experiments.mlp import MLP, MLPConfig, ModuleConfig, ModuleModel
from hf_experiments.recurrent import RecurrentConfig, RecurrentIntervention, RecurrentSeq2Seq
from tests.mlp.helpers import run_here, tiny_mlp_config, write

ROOT = Path(__file__).resolve().parents[2]
HUB_REPO, HUB_COMMIT = "hfe-test/compression", "0123456789abcdef0123456789abcdef01234567"
# What the saved code may import besides the standard library and its sibling files.
ALLOWED_THIRD_PARTY = {"torch", "transformers", "huggingface_hub", "safetensors"}
OPTIONAL_THIRD_PARTY = {"peft", "mup"}  # LoRA and muP only, imported where they are used


def _ids(shape: tuple[int, ...], high: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def _gpt() -> tuple[torch.nn.Module, dict[str, Any]]:
    config = GPTConfig(vocab_size=20, n_layers=2, n_heads=2, embed_dim=16, attn_length=16, dropout=0.0)
    return GPTForCausalLM(config), {"input_ids": _ids((2, 7), 20)}


def _blotch() -> tuple[torch.nn.Module, dict[str, Any]]:
    config = BlotchConfig(
        vocab_size=24, n_positions=32, n_embd=16, n_layer=2, n_head=2, n_btokens=2, posenc_type="RandPositionalEncoding"
    )
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, :3] = 0  # left padding: positions come from the mask
    return BlotchModel(config), {"input_ids": _ids((2, 9), 22), "attention_mask": mask}


def _compression(tmp: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    backbone = GPT2LMHeadModel(
        GPT2Config(vocab_size=40, n_positions=64, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    )
    source = tmp / "backbone_src"
    backbone.save_pretrained(source)
    config = CompressionConfig(model_string=str(source), n_cmps=2, cmp_len=6, seq_len=5, rmb_task=True, proj_cmps=True)
    return CompressionModel(config, backbone=backbone), {"input_ids": _ids((2, 11), 40)}


def _mlp() -> tuple[torch.nn.Module, dict[str, Any]]:
    config = MLPConfig(d_in=3, width=8, depth=2, d_out=2, parameterization="ntk", centering=True, gamma=0.5)
    return MLP(config), {"x": torch.randn(4, 3, generator=torch.Generator().manual_seed(0))}


def _module() -> tuple[torch.nn.Module, dict[str, Any]]:
    config = ModuleConfig(model_class="torch.nn:Linear", model_args={"in_features": 3, "out_features": 2}, gamma=2.0)
    return ModuleModel(config), {"x": torch.randn(4, 3, generator=torch.Generator().manual_seed(0))}


def _recurrent(cell: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    config = RecurrentConfig(cell=cell, n_symbols=5, state_size=12, n_layers=2)
    return RecurrentSeq2Seq(config), {"input_ids": _ids((3, 6), 5), "length": torch.tensor([6, 4, 2])}


def _intervention() -> tuple[torch.nn.Module, dict[str, Any]]:
    rnn = RecurrentSeq2Seq(RecurrentConfig(cell="gru", n_symbols=5, state_size=12))
    model = RecurrentIntervention.around(rnn, method="linear", n_positions=6)
    return model, {"input_ids": _ids((4, 6), 5), "length": torch.tensor([6, 5, 3, 6])}


# family -> (builder, the Auto classes that must load it, the output compared)
FAMILIES: dict[str, tuple[Any, tuple[str, ...], str]] = {
    "gpt": (_gpt, ("AutoModelForCausalLM", "AutoModel"), "logits"),
    "blotch": (_blotch, ("AutoModelForCausalLM", "AutoModel"), "logits"),
    "compression": (_compression, ("AutoModel", "AutoModelForCausalLM"), "logits"),
    "mlp": (_mlp, ("AutoModel",), "predictions"),
    "module": (_module, ("AutoModel",), "predictions"),
    "gru": (lambda: _recurrent("gru"), ("AutoModel",), "logits"),
    "lstm": (lambda: _recurrent("lstm"), ("AutoModel",), "logits"),
    "gru_intervention": (_intervention, ("AutoModel",), "logits"),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Any]:
    """Every family saved with `save_pretrained` (the compression folder with its backbone bundled, as a run
    leaves it), with its inputs and the outputs of the model that was saved, in `references.pt`."""
    root = tmp_path_factory.mktemp("remote_code")
    references, models = {}, {}
    for family, (build, auto_classes, key) in FAMILIES.items():
        torch.manual_seed(0)
        model, inputs = build(root) if family == "compression" else build()
        model.eval()
        folder = root / family
        model.save_pretrained(folder)
        if family == "compression":
            bundle_backbone(root / "backbone_src", folder)
        with torch.no_grad():
            expected = getattr(model(**inputs), key)
        references[family] = {
            "folder": str(folder),
            "auto_classes": list(auto_classes),
            "key": key,
            "inputs": inputs,
            "expected": expected,
        }
        models[family] = model
    shutil.rmtree(root / "backbone_src")  # the compression folder must use the backbone bundled in it
    # The compression folder as a Hub repo in the Hub cache (what `from_pretrained("user/repo")` reads offline):
    # its `from_pretrained` fetches the whole repo, the bundled backbone included.
    snapshot = root / "hub" / f"models--{HUB_REPO.replace('/', '--')}" / "snapshots" / HUB_COMMIT
    shutil.copytree(references["compression"]["folder"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(HUB_COMMIT)
    references["compression_hub"] = {**references["compression"], "folder": HUB_REPO}
    torch.save(references, root / "references.pt")
    return {"root": root, "references": references, "models": models}


def test_saved_folders_hold_auto_map_and_self_contained_code(saved):
    """`auto_map` names the configuration and each Auto class; every file it names is in the folder, and the
    copied code imports only torch, transformers, the standard library, their dependencies and its siblings."""
    std = set(sys.stdlib_module_names) | {"__future__"}
    for family in FAMILIES:
        ref = saved["references"][family]
        folder = Path(ref["folder"])
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert set(auto_map) == {"AutoConfig", *ref["auto_classes"]}, family
        for reference in auto_map.values():
            assert (folder / f"{reference.split('.')[0]}.py").is_file(), (family, reference)
        code = sorted(folder.glob("*.py"))
        for file in code:
            # what transformers imports before it runs the file (it skips `try` blocks and is-available checks)
            extra = set(get_imports(file)) - std - ALLOWED_THIRD_PARTY
            assert not extra, f"{family}: {file.name} needs {sorted(extra)}"
            # every absolute import, wherever it is: the optional extras only inside `try` (asserted above)
            tree = ast.parse(file.read_text(encoding="utf-8"))
            absolute = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            absolute |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
            extra = {m.split(".")[0] for m in absolute} - std - ALLOWED_THIRD_PARTY - OPTIONAL_THIRD_PARTY
            assert not extra, f"{family}: {file.name} imports {sorted(extra)}"
    assert (Path(saved["references"]["compression"]["folder"]) / "backbone" / "model.safetensors").is_file()
    compression = json.loads((Path(saved["references"]["compression"]["folder"]) / "config.json").read_text())
    assert compression["model_string"] == "backbone"  # relative: the folder loads wherever it is


# Runs in a fresh interpreter: the import blocker comes before anything else imports.
_BLOCKED = r"""
import importlib.util, sys
from pathlib import Path

root, references_path = Path(sys.argv[1]).resolve(), sys.argv[2]
# A setuptools editable install finds the package through a meta-path finder and a path hook: drop both, and
# the checkout itself from sys.path.
sys.meta_path[:] = [
    f for f in sys.meta_path
    if not (getattr(f, "__module__", "") or type(f).__module__).startswith("__editable__")
]
sys.path[:] = [
    p for p in sys.path
    if not p.startswith("__editable__") and Path(p or ".").resolve() != root
]
sys.path_importer_cache.clear()
assert importlib.util.find_spec("hf_experiments") is None, "hf_experiments is still importable"

import json
import torch
import transformers
from transformers import AutoConfig

results = {}
for family, ref in torch.load(references_path, weights_only=False).items():
    config = AutoConfig.from_pretrained(ref["folder"], trust_remote_code=True)
    loaded = {"config": type(config).__module__.startswith("transformers_modules.")}
    for auto_class in ref["auto_classes"]:
        model = getattr(transformers, auto_class).from_pretrained(ref["folder"], trust_remote_code=True).eval()
        with torch.no_grad():
            got = getattr(model(**ref["inputs"]), ref["key"])
        try:
            torch.testing.assert_close(got, ref["expected"], atol=1e-6, rtol=0)
            same = True
        except AssertionError as e:
            same = str(e).splitlines()[0]
        loaded[auto_class] = [type(model).__module__.startswith("transformers_modules."), same]
    results[family] = loaded
assert "hf_experiments" not in sys.modules
print("RESULTS", json.dumps(results))
"""


def test_every_family_loads_as_remote_code_without_the_package(saved, tmp_path):
    """The issue's check: `hf_experiments` unimportable (asserted with `find_spec`), offline, a fresh module
    cache; every family through AutoConfig and each of its Auto classes, outputs equal to 1e-6 (the compression
    model also as a Hub repo id read from the Hub cache)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HUB_CACHE=str(saved["root"] / "hub"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", _BLOCKED, str(ROOT), str(saved["root"] / "references.pt")],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    results = json.loads(res.stdout.split("RESULTS ", 1)[1])
    assert set(results) == {*FAMILIES, "compression_hub"}
    for family, loaded in results.items():
        assert loaded.pop("config") is True, family  # the folder's own configuration code
        assert set(loaded) == set(saved["references"][family]["auto_classes"]), family
        for auto_class, (remote, same) in loaded.items():
            assert remote is True, (family, auto_class)
            assert same is True, (family, auto_class, same)


def test_with_the_package_imported_no_trust_remote_code_is_needed(saved):
    """The registered classes win: the package's own classes, the same outputs, no `trust_remote_code`."""
    for family, ref in saved["references"].items():
        if family not in FAMILIES:
            continue
        config = AutoConfig.from_pretrained(ref["folder"])
        assert type(config) is type(saved["models"][family].config), family
        for auto_class in ref["auto_classes"]:
            model = getattr(transformers, auto_class).from_pretrained(ref["folder"]).eval()
            assert type(model) is type(saved["models"][family]), (family, auto_class)
            with torch.no_grad():
                got = getattr(model(**ref["inputs"]), ref["key"])
            torch.testing.assert_close(got, ref["expected"], atol=1e-6, rtol=0)


def test_a_module_model_whose_code_is_elsewhere_fails_with_a_clear_message(tmp_path):
    """A `ModuleModel` saves only the wrapper's code: a network from a file that is gone (or a module that cannot
    be imported) is one clear error saying so, not a bare traceback."""
    net_file = tmp_path / "nets.py"
    net_file.write_text("import torch\n\nclass Net(torch.nn.Linear):\n    pass\n")
    config = ModuleConfig(model_class=f"{net_file}:Net", model_args={"in_features": 2, "out_features": 1})
    ModuleModel(config).save_pretrained(tmp_path / "model")
    net_file.unlink()
    with pytest.raises(ValueError, match="not saved with the model") as err:
        transformers.AutoModel.from_pretrained(tmp_path / "model")
    assert str(net_file) in str(err.value)
    config = ModuleConfig(model_class="nowhere_pkg.nets:Net")
    with pytest.raises(ValueError, match=r"cannot import 'nowhere_pkg\.nets'.*not saved with the model"):
        ModuleModel(config)


def test_a_run_folder_holds_the_code_and_auto_map(tmp_path):
    """What `finish` writes (`Trainer.save_model` -> `save_pretrained`) is such a folder too."""
    assert run_here(write(tmp_path / "run.json", tiny_mlp_config(tmp_path, exp_name="run", max_steps=2))) == 0
    model_dir = tmp_path / "run" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_mlp.MLPConfig", "AutoModel": "modeling_mlp.MLP"}
    assert {"configuration_mlp.py", "modeling_mlp.py"} <= {p.name for p in model_dir.glob("*.py")}
