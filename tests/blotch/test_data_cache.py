"""The data cache and its Trainer: save/load, the max_samples bound, the next epoch trains on the mutated
rows (also through DataLoader workers), epoch lengths and max_steps follow the cache, and a resume from any
checkpoint (mid-epoch or at an epoch's last step) equals the uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from hf_experiments.blotch.arithmetic import ProblemParams, distinct_problems, solve
from hf_experiments.blotch.blotch_config import BlotchTrainingArguments
from hf_experiments.blotch.blotching import BlotchCollator
from hf_experiments.blotch.configuration_blotch import BlotchConfig
from hf_experiments.blotch.experiment import BlotchCacheTrainer
from hf_experiments.blotch.modeling_blotch import BlotchModel
from hf_experiments.blotch.self_training.data_cache import CACHE_DIR, CacheView, DataCache
from hf_experiments.blotch.self_training.schedule import ManipulationSchedule
from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

TOK = arith_tokenizer()


def rows(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    problems = list(distinct_problems(n, ProblemParams(max_num=9, max_ents=3), np.random.default_rng(seed)))
    return problems, ["=".join(s for s, _ in solve(p)) for p in problems]


def test_save_load_round_trip(tmp_path):
    cache = DataCache(TOK, *rows(10), max_samples=12, full_policy="replace_oldest")
    cache.replace([2, 5], ["7", "9"], "axe", 0)
    cache.add(*rows(3, seed=1), "star", 1)
    cache.ledger.epoch_starts, cache.ledger.epoch_updates = [0, 3], [3, 4]
    cache.ledger.rounds.append({"round": 0, "epoch": 1, "kind": "axe", "kept": 2})
    cache.save(tmp_path / CACHE_DIR)
    assert not list(tmp_path.glob(".*tmp*"))  # the temp folder was renamed, nothing left behind
    other = DataCache(TOK, *rows(4, seed=2))
    other.load(tmp_path / CACHE_DIR)
    assert other.table() == cache.table()
    assert other.ledger == cache.ledger
    assert (other.max_samples, other.full_policy) == (12, "replace_oldest")
    assert all(np.array_equal(a, b) for a, b in zip(other.ids, cache.ids))


def test_mutations_reencode_rows():
    problems, solutions = rows(6)
    cache = DataCache(TOK, problems, solutions)
    answer = solutions[3].rsplit("=", 1)[-1]
    cache.replace([3], [answer], "axe", 0)
    expected = encode_rows(TOK, [f"{problems[3]}={answer}"])[0]
    assert np.array_equal(CacheView(cache)[3]["input_ids"], expected)
    assert (cache.origin[3], cache.round[3], cache.problems[3]) == ("axe", 0, problems[3])
    with pytest.raises(ValueError, match="row index 6"):
        cache.replace([6], ["1"], "axe", 0)


def test_max_samples_bound_drop_new_and_replace_oldest():
    new_p, new_s = rows(5, seed=3)
    keep = DataCache(TOK, *rows(6), max_samples=8)
    assert keep.add(new_p, new_s, "star", 0) == {"added": 2, "replaced": 0, "dropped": 3}
    assert len(keep) == 8 and keep.problems[6:] == new_p[:2]

    turn = DataCache(TOK, *rows(6), max_samples=8, full_policy="replace_oldest")
    turn.add(new_p[:2], new_s[:2], "star", 0)  # fills the room
    assert turn.add(*rows(3, seed=4), "star", 1) == {"added": 0, "replaced": 3, "dropped": 0}
    assert len(turn) == 8
    assert turn.round == [1, 1, 1, -1, -1, -1, 0, 0]  # the three oldest (initial) rows were overwritten
    with pytest.raises(ValueError, match="max_samples=3"):
        DataCache(TOK, *rows(6), max_samples=3)


# --------------------------------------------------------------------------------------------
# The Trainer on a cache (in process, tiny model)
# --------------------------------------------------------------------------------------------
class Mutate(TrainerCallback):
    """Test manipulation: at the start of every fresh epoch after the first, shorten every solution to its
    answer and append ``grow`` new rows."""

    def __init__(self, cache: DataCache, grow: int) -> None:
        self.cache, self.grow = cache, grow
        self.schedule = ManipulationSchedule(cache)

    def on_epoch_begin(self, args, state, control, **kwargs):
        c = self.schedule.epochs_done(state)
        if c:
            idx = [i for i, s in enumerate(self.cache.solutions) if "=" in s]
            self.cache.replace(idx, [self.cache.solutions[i].rsplit("=", 1)[-1] for i in idx], "axe", c)
            self.cache.add(*rows(self.grow, seed=100 + c), "star", c)
            self.cache.ledger.rounds.append({"epoch": c})
        return control


class StopAt(TrainerCallback):
    """Ends training right after global step ``step`` (its checkpoint written): a kill, with state on disk."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save, control.should_training_stop = True, True
        return control


class Recording(BlotchCacheTrainer):
    seen: list[tuple[int, int, list[str]]]

    def training_step(self, model, inputs, num_items_in_batch=None):
        texts = TOK.batch_decode(inputs["input_ids"], skip_special_tokens=True)
        self.seen.append((self.state.global_step, int(self.state.epoch or 0), texts))
        return super().training_step(model, inputs, num_items_in_batch)


def tiny_model() -> BlotchModel:
    torch.manual_seed(0)
    cfg = BlotchConfig(
        vocab_size=len(TOK),
        d_model=16,
        n_heads=2,
        h_mult=2,
        n_layers=1,
        max_posencs=64,
        drop_p=0.1,
        bos_token_id=TOK.bos_token_id,
        eos_token_id=TOK.eos_token_id,
        pad_token_id=TOK.pad_token_id,
    )
    return BlotchModel(cfg)


def make_trainer(
    tmp_path, name: str, grow: int = 8, workers: int = 0, blotch_p: float = 0.3, **kw
) -> tuple[Recording, DataCache]:
    cache = DataCache(TOK, *rows(24), max_samples=200)
    args = BlotchTrainingArguments(
        output_dir=str(tmp_path / name),
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to="none",
        logging_steps=1,
        save_strategy="steps",
        save_steps=kw.pop("save_steps", 100),
        seed=0,
        dataloader_num_workers=workers,
        save_total_limit=None,
        **kw,
    )
    collator = BlotchCollator(pad_id=TOK.pad_token_id, eq_id=TOK.convert_tokens_to_ids("="), blotch_p=blotch_p)
    trainer = Recording(
        model=tiny_model(), args=args, train_dataset=CacheView(cache), data_collator=collator, processing_class=TOK
    )
    trainer.attach_cache(cache)
    trainer.seen = []
    trainer.add_callback(Mutate(cache, grow))
    return trainer, cache


def test_each_epoch_trains_on_the_current_cache_with_epoch_counts_exact(tmp_path):
    trainer, cache = make_trainer(tmp_path, "epochs", num_train_epochs=3, blotch_p=0.0)  # rows arrive whole
    trainer.train()
    by_epoch: dict[int, list[str]] = {}
    for step, _, texts in trainer.seen:
        epoch = next(e for e, start in reversed(list(enumerate(cache.ledger.epoch_starts))) if step >= start)
        by_epoch.setdefault(epoch, []).extend(texts)
    # Every epoch is one pass over the cache as it was at the epoch's start: 24, 32, 40 rows.
    assert [len(by_epoch[e]) for e in range(3)] == [24, 32, 40]
    assert cache.ledger.epoch_updates == [3, 4, 5] and trainer.state.global_step == 12
    problems, solutions = rows(24)
    full = [f"{p}={s}" for p, s in zip(problems, solutions)]
    short = [f"{p}={s.rsplit('=', 1)[-1]}" for p, s in zip(problems, solutions)]
    new1 = [f"{p}={s}" for p, s in zip(*rows(8, seed=101))]
    assert sorted(by_epoch[0]) == sorted(full)
    assert sorted(by_epoch[1]) == sorted(short + new1)  # the mutation of epoch 2's start, and the new rows
    assert sorted(by_epoch[2]) == sorted(f"{p}={s}" for p, s in zip(cache.problems, cache.solutions))


def test_max_steps_is_exact_however_the_cache_grows(tmp_path):
    trainer, cache = make_trainer(tmp_path, "steps", max_steps=10)
    trainer.train()
    assert trainer.state.global_step == 10
    assert cache.ledger.epoch_updates == [3, 4, 5] and cache.ledger.epoch_starts == [0, 3, 7]


def test_dataloader_workers_see_mutated_rows(tmp_path):
    trainer, cache = make_trainer(tmp_path, "workers", workers=1, num_train_epochs=2, blotch_p=0.0)
    trainer.train()
    last = [t for step, _, texts in trainer.seen if step >= cache.ledger.epoch_starts[1] for t in texts]
    assert sorted(last) == sorted(f"{p}={s}" for p, s in zip(cache.problems, cache.solutions))
    assert sum(t.count("=") == 1 for t in last) >= 24  # the shortened rows, not the worker's old copy


def test_persistent_workers_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="dataloader_persistent_workers"):
        make_trainer(tmp_path, "pw", workers=1, dataloader_persistent_workers=True, max_steps=1)


@pytest.mark.parametrize("stop", [5, 7], ids=["mid-epoch", "epoch-end"])
def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path, stop):
    """Checkpoint 5 is inside epoch 2, checkpoint 7 its last step (the mutation of epoch 3 runs after the
    resume). Dropout and random blotching make any RNG or data-order slip visible."""
    ref, ref_cache = make_trainer(tmp_path, "ref", num_train_epochs=3)
    ref.train()

    first, _ = make_trainer(tmp_path, "cut", num_train_epochs=3, save_steps=stop)
    first.add_callback(StopAt(stop))
    first.train()
    ckpt = tmp_path / "cut" / f"checkpoint-{stop}"
    assert (ckpt / CACHE_DIR / "rows.parquet").is_file()

    resumed, cache = make_trainer(tmp_path, "cut", num_train_epochs=3)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert cache.table() == ref_cache.table()
    assert cache.ledger.epoch_starts == ref_cache.ledger.epoch_starts
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    ref_after = [(s, t) for s, _, t in ref.seen if s >= stop]
    assert [(s, t) for s, _, t in resumed.seen] == ref_after
