"""Model and dataset cards are `huggingface_hub` cards: they load back with `ModelCard` / `DatasetCard`, and a
dataset card written before (hand-made YAML) still gives its generating parameters."""

from __future__ import annotations

import json

import numpy as np
from huggingface_hub import DatasetCard, ModelCard

from hf_experiments.core.dataset_io import CARD_KEY, read_card_params, write_dataset
from hf_experiments.core.run_folder import write_model_card


def test_model_card_loads_with_huggingface_hub(tmp_path):
    """Written for a folder that is not a run's `model/` (no config.json, no run_config.json beside it): it still
    loads, and the config it names is written into the folder."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    write_model_card(model_dir, "blotch", {"exp_name": "run1", "seed": 0}, {"eval_loss": 0.25, "steps": 3})
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.library_name == "transformers" and card.data.tags == ["hf_experiments", "blotch"]
    assert "# run1" in card.text and "| eval_loss | 0.25 |" in card.text
    assert "AutoModel.from_pretrained(" in card.text and "AutoTokenizer" not in card.text
    assert json.loads((model_dir / "run_config.json").read_text()) == {"exp_name": "run1", "seed": 0}


def test_dataset_card_loads_with_huggingface_hub_and_keeps_the_parameters(tmp_path):
    out = write_dataset(tmp_path / "ds", {"train": {"x": np.arange(4)}}, {"n": 4, "seed": [1, 2]}, "Toy rows.")
    card = DatasetCard.load(out / "README.md")
    assert card.data.pretty_name == "ds" and card.data.to_dict()[CARD_KEY]["num_rows"] == {"train": 4}
    assert read_card_params(out) == {"n": 4, "seed": [1, 2]}


def test_a_card_in_the_earlier_hand_written_format_still_reads(tmp_path):
    (tmp_path / "README.md").write_text(
        "---\npretty_name: old\nhf_experiments:\n  params:\n    task: linear\n    n: 3\n  num_rows:\n"
        "    train: 3\n---\n\n# old\n",
        encoding="utf-8",
    )
    assert read_card_params(tmp_path) == {"task": "linear", "n": 3}
