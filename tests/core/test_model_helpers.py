"""`model_config`: a model config built from argument dataclasses (every field passed once, derived values
added), and a config's own check turned into the run's one-line config error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hf_experiments.core.config import ConfigError
from hf_experiments.core.model_helpers import model_config


@dataclass
class Sizes:
    width: int = 8
    heads: int = 2
    note: str = "not a config field"


class ToyConfig:
    def __init__(self, width: int, heads: int, vocab_size: int = 10) -> None:
        if width % heads:
            raise ValueError(f"ToyConfig: width={width!r} is invalid; expected a multiple of heads={heads}.")
        if vocab_size < 1:
            raise ValueError("something else went wrong")
        self.width, self.heads, self.vocab_size = width, heads, vocab_size


def test_every_field_is_passed_and_derived_values_win():
    cfg = model_config(ToyConfig, Sizes(width=12, heads=3), drop=("note",), vocab_size=99)
    assert (cfg.width, cfg.heads, cfg.vocab_size) == (12, 3, 99)
    assert model_config(ToyConfig, Sizes(), drop=("note",), heads=4).heads == 4  # a derived value overrides


def test_a_config_check_becomes_a_config_error_naming_key_value_and_what_is_allowed():
    with pytest.raises(ConfigError) as e:
        model_config(ToyConfig, Sizes(width=10, heads=4), drop=("note",))
    assert (e.value.key, e.value.value, e.value.allowed) == ("width", 10, "a multiple of heads=4")
    with pytest.raises(ConfigError, match="something else went wrong") as e:  # another message: kept whole
        model_config(ToyConfig, Sizes(), drop=("note",), vocab_size=0)
    assert e.value.key == "model"


def test_a_field_the_config_does_not_take_must_be_dropped():
    with pytest.raises(TypeError):  # a typo'd or new argument never disappears silently
        model_config(ToyConfig, Sizes())


def test_a_transformers_config_names_a_keyword_it_does_not_have():
    """A PreTrainedConfig would store an unknown keyword as an attribute and carry on; a typo'd or clashing
    argument field must fail instead."""
    from transformers import GPT2Config

    @dataclass
    class Args:
        n_layer: int = 2
        n_embd: int = 16
        n_head: int = 2
        shiny_new_option: bool = True

    with pytest.raises(TypeError, match="shiny_new_option"):
        model_config(GPT2Config, Args())
    assert model_config(GPT2Config, Args(), drop=("shiny_new_option",)).n_layer == 2
