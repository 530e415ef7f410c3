"""`stop_when`: training ends at the first evaluation that meets a metric target (a real Trainer on a tiny GPT),
runs to max_steps when the target is never met, and a bad target is a config error / a one-line error."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from hf_experiments.arrows.configuration_gpt import GPTConfig
from hf_experiments.arrows.modeling_gpt import GPTForCausalLM
from hf_experiments.core.config import ConfigError, ExperimentTrainingArguments, parse_stop_when
from hf_experiments.core.trainer import ExperimentTrainer
from tests.helpers import run, write_config


def _trainer(tmp_path, stop_when: str | None, max_steps: int = 40) -> ExperimentTrainer:
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(vocab_size=8, n_layers=1, n_heads=1, embed_dim=16, attn_length=8, dropout=0.0))
    ids = [[i % 8, (i + 1) % 8, (i + 2) % 8, (i + 3) % 8] for i in range(64)]
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        max_steps=max_steps,
        eval_strategy="steps",
        eval_steps=5,
        save_strategy="no",
        report_to="none",
        stop_when=stop_when,
        torch_threads="1",
    )
    return ExperimentTrainer(model=model, args=args, train_dataset=data, eval_dataset=data)


def test_training_stops_at_the_first_evaluation_meeting_the_target(tmp_path):
    free = _trainer(tmp_path / "free", None)
    free.train()
    losses = [(h["step"], h["eval_loss"]) for h in free.state.log_history if "eval_loss" in h]
    target = losses[2][1] + 1e-6  # the third evaluation's loss (step 15) is the first at or below it
    assert all(loss > target for _, loss in losses[:2])
    stopped = _trainer(tmp_path / "stopped", f"eval_loss<={target}")
    stopped.train()
    assert stopped.state.global_step == losses[2][0] == 15
    never = _trainer(tmp_path / "never", "eval_loss<-1")  # negative control: never met, trains to max_steps
    never.train()
    assert never.state.global_step == 40


def test_a_metric_no_evaluation_reports_fails_after_the_first_evaluation(tmp_path):
    trainer = _trainer(tmp_path, "eval_acuracy>=0.9")
    with pytest.raises(ConfigError, match=r"stop_when=.*eval_acuracy.*these exist: .*eval_loss"):
        trainer.train()
    assert trainer.state.global_step == 6  # the step after the first evaluation (step 5)
    last = _trainer(tmp_path / "last", "eval_acuracy>=0.9", max_steps=5)  # the only evaluation at the last step
    with pytest.raises(ConfigError, match="eval_acuracy"):
        last.train()


def test_an_evaluation_before_training_is_no_false_alarm_and_the_stop_step_is_saved(tmp_path):
    trainer = _trainer(tmp_path, "eval_loss<100")
    trainer.args.save_strategy = "steps"
    trainer.args.save_steps = 1000
    trainer.evaluate()
    trainer.train()
    assert trainer.state.global_step == 5 and (tmp_path / "checkpoint-5").is_dir()


@pytest.mark.parametrize(
    "text,ok",
    [("eval_valid_accuracy>=0.95", True), (" eval_loss < 1e-3 ", True), ("eval_loss=1", False), ("acc>=high", False)],
)
def test_parse(text, ok):
    if ok:
        assert parse_stop_when(text)[1] in (">=", "<")
    else:
        with pytest.raises(ValueError, match="<metric><op><number>"):
            parse_stop_when(text)


def test_bad_stop_when_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="stop_when"):
        ExperimentTrainingArguments(output_dir=str(tmp_path), stop_when="loss>=x", report_to="none")
    with pytest.raises(ConfigError, match="needs evaluations"):
        ExperimentTrainingArguments(output_dir=str(tmp_path), stop_when="eval_loss<1", report_to="none")


def test_bad_stop_when_on_the_command_line_exits_2_and_writes_nothing(tmp_path):
    cfg = write_config(tmp_path / "c.json", **json.loads(open("configs/gru_repeat.json").read()))
    res = run("--config", str(cfg), "--save_root", str(tmp_path / "out"), "--stop_when", "eval_valid_accuracy=0.95")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("config error: stop_when='eval_valid_accuracy=0.95'")
    assert not (tmp_path / "out").exists()
