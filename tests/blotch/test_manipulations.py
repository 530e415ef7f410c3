"""Data-cache manipulations (STaR, augmentation, axing, rationalization, internalization): every kept row obeys
its rule, checked here independently with ``arithmetic.evaluate`` and string lengths.

Two real models: ``ScriptedLM``, a ``PreTrainedModel`` whose next-token distribution spells given solutions
(weighted, so sampling, greedy decoding and teacher-forced losses are all known), and a tiny random
``BlotchModel`` for the loss arithmetic of axing against a brute-force one-row-at-a-time loop.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math
import re
import socket

import pytest
import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from hf_experiments.blotch.arithmetic import evaluate
from hf_experiments.blotch.configuration_blotch import BlotchConfig
from hf_experiments.blotch.evaluation import btoken_id, generate_solutions
from hf_experiments.blotch.modeling_blotch import BlotchModel
from hf_experiments.blotch.self_training.axing import axe, removal_costs
from hf_experiments.blotch.self_training.solutions import ground_truth, internalize, is_correct, solution_length
from hf_experiments.blotch.self_training.star import augment, rationalize, star
from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

TOK = arith_tokenizer()
N_BT = 3
EOS = TOK.eos_token_id
END = "$"  # EOS inside script strings
BOS_MARK = "^"  # BOS inside script strings (a special token the model should never write)
FLOOR = -30.0  # logit of every token a script does not allow


# --------------------------------------------------------------------------------------------
# A model whose outputs we control
# --------------------------------------------------------------------------------------------
class ScriptedConfig(PretrainedConfig):
    model_type = "scripted_arith_test"

    def __init__(self, n_btokens: int = N_BT, blotch_p_min: float = 0.0, blotch_p_max: float = 0.4, **kwargs):
        self.vocab_size = len(TOK) + n_btokens
        self.n_btokens = n_btokens
        self.blotch_p_min = blotch_p_min
        self.blotch_p_max = blotch_p_max
        super().__init__(pad_token_id=TOK.pad_token_id, bos_token_id=TOK.bos_token_id, eos_token_id=EOS, **kwargs)

    @property
    def btoken_offset(self) -> int:
        return self.vocab_size - self.n_btokens


class ScriptedLM(PreTrainedModel, GenerationMixin):
    """After ``problem =`` it writes one of ``scripts[problem]`` (solution, weight): the next-token distribution
    is the weight of the scripts consistent with the text so far. Off-script it "jumps to the answer": it
    ends the current step with ``=`` and writes the problem's value, then EOS. Records the first token of every
    row it reads (the blotch token of the prompt)."""

    config_class = ScriptedConfig

    def __init__(self, config: ScriptedConfig, scripts: dict[str, list[tuple[str, float]]] | None = None):
        super().__init__(config)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device and a parameter for generate
        self.scripts = scripts or {}
        self.generation_config.use_cache = False  # it reads the whole row each step
        self.first_tokens: set[int] = set()
        self.memo: dict[str, torch.Tensor] = {}

    def next_logits(self, text: str) -> torch.Tensor:
        if text in self.memo:
            return self.memo[text]
        logits = torch.full((self.config.vocab_size,), FLOOR)
        problem, eq, sol = text.partition("=")
        if not eq:  # inside the problem: anything
            logits[: len(TOK)] = 0.0
        else:
            nxt: dict[str, float] = {}
            for script, weight in self.scripts.get(problem, []):
                full = script + END
                if len(full) > len(sol) and full.startswith(sol):
                    nxt[full[len(sol)]] = nxt.get(full[len(sol)], 0.0) + weight
            if not nxt:  # off script: finish this step, then write the answer
                answer, current = str(evaluate(problem)), sol.rsplit("=", 1)[-1]
                if current == answer:
                    nxt = {END: 1.0}
                elif answer.startswith(current):
                    nxt = {answer[len(current)]: 1.0}
                else:
                    nxt = {"=": 1.0}
            total = sum(nxt.values())
            for char, weight in nxt.items():
                tid = {END: EOS, BOS_MARK: TOK.bos_token_id}.get(char) or TOK.convert_tokens_to_ids(char)
                logits[tid] = math.log(weight / total)
        self.memo[text] = logits
        return logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        b, t = input_ids.shape
        out = torch.full((b, t, self.config.vocab_size), FLOOR)
        for row in range(b):
            text, started, saw_bos = "", False, False
            for pos in range(t):
                tid = int(input_ids[row, pos])
                if tid == TOK.pad_token_id and not started:
                    continue  # left padding
                if not started:
                    self.first_tokens.add(tid)
                    started = True
                if tid >= 4 and tid < len(TOK):
                    text += TOK.convert_ids_to_tokens(tid)
                elif tid == TOK.bos_token_id:
                    text += BOS_MARK if saw_bos else ""  # a BOS the model wrote itself
                    saw_bos = True
                out[row, pos] = self.next_logits(text)
        return CausalLMOutput(logits=out + 0 * self.anchor)


def scripted(scripts: dict[str, list[tuple[str, float]] | str]) -> ScriptedLM:
    full = {p: ([(s, 1.0)] if isinstance(s, str) else s) for p, s in scripts.items()}
    return ScriptedLM(ScriptedConfig(), full).eval()


def tiny_blotch() -> BlotchModel:
    torch.manual_seed(0)
    cfg = BlotchConfig(
        vocab_size=len(TOK) + N_BT,
        n_btokens=N_BT,
        blotch_p_min=0.0,
        blotch_p_max=0.4,
        d_model=32,
        n_heads=2,
        n_layers=2,
        max_posencs=128,
    )
    return BlotchModel(cfg).eval()


# --------------------------------------------------------------------------------------------
# Independent checks (arithmetic.evaluate and string lengths only)
# --------------------------------------------------------------------------------------------
def gt(problem: str) -> str:
    return ground_truth(problem)


def rule_correct(problem: str, solution: str) -> bool:
    value = evaluate(problem)
    steps = solution.split("=")
    if not re.fullmatch(r"[0-9]+", steps[-1]):
        return False
    for step in steps:
        try:
            if evaluate(step) != value:
                return False
        except ValueError:
            return False
    return True


GEN = {"blotch_p": 0.2, "batch_size": 4, "max_new_tokens": 40}

STAR_SCRIPTS = {
    "27+75": "7+20+75=12+90=102",  # correct, shorter than the ground truth: kept
    "12+16": "28",  # the answer alone: kept
    "3+4": "7",  # correct but as long as the ground truth "7": not shorter
    "40+2": "2+40=42=42",  # correct but longer
    "8+15": "5+8+10=24",  # wrong answer
    "19+23": "9+10+23=40=42",  # right answer, a wrong step
    "2*3+4": "1*3+=10",  # malformed step
    "9+9": "18=",  # empty final step
    "6+1": "((((7",  # garbage
    "5+5+5": "5+10=1" + "5" * 60,  # never finishes within max_new_tokens
}


def test_solution_text_helpers_and_internalize():
    assert solution_length("7+20+75=102") == 12 == len(encode_rows(TOK, ["7+20+75=102"], add_bos=False)[0])
    for bad in ("", "=", "3+", "3+4==7", "7=", "10+(", "7=7+", "+7"):
        assert not is_correct("3+4", bad) and not rule_correct("3+4", bad)
    assert is_correct("3+4", "4+3=7") and is_correct("2*3+4", "3+3+4=6+4=10")
    assert not is_correct("3+4", "7=3+4")  # the last step must be the number
    sols = ["1+2+3=3+3=6", "7", "5+5=10"]
    assert internalize(sols, 0) == sols
    assert internalize(sols, 1) == ["3+3=6", "7", "10"]
    assert internalize(sols, 5) == ["6", "7", "10"]  # the answer always stays
    with pytest.raises(ValueError, match="k=-1"):
        internalize(sols, -1)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_star_keeps_only_correct_solutions_shorter_than_the_ground_truth(temperature):
    model = scripted(STAR_SCRIPTS)
    problems = list(STAR_SCRIPTS)
    torch.manual_seed(0)
    res = star(model, TOK, problems, temperature=temperature, **GEN)
    for problem, kept in zip(problems, res.solutions):
        written = STAR_SCRIPTS[problem]
        rule = rule_correct(problem, written) and len(written) + 1 < len(gt(problem)) + 1
        assert (kept is not None) == rule, problem
        if kept is not None:
            assert kept == written  # only model-written text
    assert [p for p, s in zip(problems, res.solutions) if s] == ["27+75", "12+16"]
    assert (res.tried, res.kept) == (10, 2)
    right = {"27+75", "12+16", "3+4", "40+2", "19+23", "2*3+4"}  # final answer right, finished
    assert res.answer_acc == pytest.approx(len(right) / 10)
    level = btoken_id(model, 0.2)
    assert model.first_tokens == {level} and level == model.config.btoken_offset + 1  # prompts carry the btoken


def test_augment_keeps_only_strictly_shorter_correct_solutions():
    model = scripted(STAR_SCRIPTS)
    problems = list(STAR_SCRIPTS)
    cached = [gt(p) for p in problems]
    cached[0] = STAR_SCRIPTS["27+75"]  # the model writes the same length: not strictly shorter
    cached[3] = "2+40=40+2=42=42=42"  # longer than what the model writes: replaced
    res = augment(model, TOK, problems, cached, temperature=0.0, **GEN)
    for problem, old, kept in zip(problems, cached, res.solutions):
        written = STAR_SCRIPTS[problem]
        rule = rule_correct(problem, written) and len(written) < len(old)
        assert (kept is not None) == rule, problem
        assert kept is None or kept == written
    assert [p for p, s in zip(problems, res.solutions) if s] == ["12+16", "40+2"]


def test_star_with_several_rollouts_keeps_the_shortest_correct_one():
    model = scripted({"27+75": [("7+20+75=12+90=102", 0.4), ("7+20+75=102", 0.4), ("99", 0.2)]})
    torch.manual_seed(0)
    res = star(model, TOK, ["27+75"], temperature=1.0, n_rollouts=12, **GEN)
    assert res.solutions == ["7+20+75=102"]
    assert 0 < res.answer_acc < 1  # the share of rollouts: "99" is wrong


def test_rationalization_recovers_wrong_rows_without_leaking_the_hint():
    scripts = {
        "27+75": [("93", 0.7), ("7+20+75=102", 0.15), ("7+20+75=5+7+20+70=102", 0.15)],
        "8+15": [("5+8+10=24", 0.75), ("5+8+10=23", 0.25)],
        "19+23": [("40=43", 0.5), ("40=42", 0.1), ("9+10+23=42", 0.4)],  # a wrong step on the likely path
        "3+4": [("8", 1.0)],  # no path to the answer: stays wrong
        "40+2": [("41", 0.6), ("2+40=40+2=42", 0.4)],  # the only right path is longer than the ground truth
        "12+16": [("28", 1.0)],  # right at once: no rationalization needed
    }
    model = scripted(scripts)
    problems = list(scripts)
    torch.manual_seed(0)
    plain = star(model, TOK, problems, temperature=0.0, **GEN)
    torch.manual_seed(0)
    res = star(model, TOK, problems, temperature=0.0, rationalize=True, rationalize_tries=16, **GEN)
    assert plain.solutions == [None, None, None, None, None, "28"]
    assert res.solutions == ["7+20+75=102", "5+8+10=23", "9+10+23=42", None, None, "28"]
    assert res.stats["rationalize_tried"] == 5 and res.stats["rationalized"] == 3
    for problem, kept in zip(problems, res.solutions):
        if kept is None:
            continue
        assert rule_correct(problem, kept) and len(kept) < len(gt(problem))
        assert kept in [s for s, _ in scripts[problem]]  # a path the model wrote, nothing of a hint in it
        assert problem not in kept.split("=") and not kept.startswith(problem)
    assert rationalize(model, TOK, ["3+4"], tries=4) == [None]


def test_malformed_output_is_never_kept_and_never_raises():
    garbage = {
        "3+4": "=+*(",
        "8+15": "((((((((",
        "12+16": "9" * 80,
        "40+2": "42=",
        "27+75": "1*2*3*0+(9",
        "19+23": "4^2",
        "9+9": "9+9^=18",
    }  # '^': a BOS inside, which decoding would silently drop
    model = scripted(garbage)
    problems = list(garbage)
    for res in (
        star(model, TOK, problems, temperature=1.0, rationalize=True, rationalize_tries=2, **GEN),
        augment(model, TOK, problems, [gt(p) for p in problems], temperature=0.0, **GEN),
        axe(model, TOK, problems, [gt(p) for p in problems], tol=1e9, abs_tol=True, comp_steps=2, **GEN),
    ):
        assert res.solutions == [None] * 7 and res.kept == 0


# --------------------------------------------------------------------------------------------
# Axing
# --------------------------------------------------------------------------------------------
def window_chars(text: str, first_seg: int, last_seg: int) -> tuple[int, int, bool]:
    """Character span [start, end) of segments first..last of ``problem=s1=...=sK`` (segment m opens with the
    m-th '='), and whether it reaches the end (then EOS is compared too)."""
    eqs = [i for i, c in enumerate(text) if c == "="]
    end = eqs[last_seg] if last_seg < len(eqs) else len(text)
    return eqs[first_seg - 1], end, last_seg >= len(eqs)


@torch.no_grad()
def brute_force_costs(model, problem: str, solution: str, comp_steps: int, btok: int | None):
    """One row, one candidate at a time, no padding, windows from character offsets: (step, L_with,
    L_without, answer_ok) for every intermediate step."""
    steps = solution.split("=")
    k = len(steps)
    n_real = model.config.vocab_size - model.config.n_btokens
    shift = 1 + (btok is not None)  # token position of text character c is c + shift

    def token_losses(text: str):
        ids = torch.tensor(encode_rows(TOK, [text])[0])
        if btok is not None:
            ids = torch.cat([torch.tensor([btok]), ids])
        logits = model(input_ids=ids[None]).logits[0, :, :n_real]  # (T, V)
        ce = F.cross_entropy(logits[:-1], ids[1:], reduction="none")  # ce[q-1]: loss of token q
        return ce, logits[:-1].argmax(-1) == ids[1:]

    out = []
    for j in range(1, k):
        last = k if comp_steps == -1 else min(j + comp_steps, k)
        full = f"{problem}={solution}"
        short = problem + "=" + "=".join(steps[: j - 1] + steps[j:])
        ce_f, _ = token_losses(full)
        ce_s, hit_s = token_losses(short)
        a, b, eos = window_chars(full, j + 1, last)
        with_ = ce_f[a + shift - 1 : b + shift - 1 + eos].mean()
        a2, b2, eos2 = window_chars(short, j, last - 1)
        without = ce_s[a2 + shift - 1 : b2 + shift - 1 + eos2].mean()
        ans_start = short.rindex("=") + 1  # answer digits and EOS
        ok = bool(hit_s[ans_start + shift - 1 :].all())
        out.append((j, float(with_), float(without), ok))
    return out


ROWS = [  # (problem, solution): ground truths and shortened solutions, 0 to 4 intermediate steps
    ("27+75", gt("27+75")),
    ("3+4", "7"),
    ("40+2", gt("40+2")),
    ("2*3+4", gt("2*3+4")),
    ("8+15", "5+8+10=23"),
]


@pytest.mark.parametrize("comp_steps", [1, 2, -1])
def test_removal_costs_equal_a_brute_force_loop(comp_steps):
    model = tiny_blotch()
    problems, solutions = zip(*ROWS)
    rc = removal_costs(model, TOK, problems, solutions, comp_steps=comp_steps, blotch_p=0.4, batch_size=3)
    btok = btoken_id(model, 0.4)
    expected = [(i, *c) for i, (p, s) in enumerate(ROWS) for c in brute_force_costs(model, p, s, comp_steps, btok)]
    assert len(rc.row) == len(expected) == sum(s.count("=") for s in solutions)
    assert rc.row.tolist() == [e[0] for e in expected] and rc.step.tolist() == [e[1] for e in expected]
    torch.testing.assert_close(
        torch.tensor(rc.loss_with), torch.tensor([e[2] for e in expected]), atol=1e-4, rtol=1e-4, check_dtype=False
    )
    torch.testing.assert_close(
        torch.tensor(rc.loss_without), torch.tensor([e[3] for e in expected]), atol=1e-4, rtol=1e-4, check_dtype=False
    )
    assert rc.answer_ok.tolist() == [e[4] for e in expected]
    whole = removal_costs(model, TOK, problems, solutions, comp_steps=comp_steps, blotch_p=0.4, batch_size=64)
    torch.testing.assert_close(
        torch.tensor(whole.loss_without), torch.tensor(rc.loss_without), atol=1e-5, rtol=1e-5
    )  # batching does not change the numbers


AXE_SCRIPTS = {
    # the model knows a shortcut that skips step 2: removing it costs least
    "27+75": [(gt("27+75"), 0.9), ("7+20+75=12+20+70=32+70=102", 0.1)],
    # a shortcut skipping step 3 that ends in a wrong answer: the answer check must veto it
    "19+23": [(gt("19+23"), 0.9), ("9+10+23=3+9+10+20=20+22=43", 0.1)],
    "3+4": [("7", 1.0)],  # no intermediate step
    "8+15": [("24", 1.0)],  # unsolved
    "12+16": [],  # off script: writes the answer at once
}


def brute_force_axe(model, problem, solution, tol, abs_tol, comp_steps, btok):
    rolls = generate_solutions(model, TOK, [problem], 0.2, 0.0, 1, 1, 40)
    if not (rolls.finished[0, 0] and rolls.texts[0][0].rsplit("=", 1)[-1] == str(evaluate(problem))):
        return None
    best = None
    for j, with_, without, ok in brute_force_costs(model, problem, solution, comp_steps, btok):
        cost = without - with_ if abs_tol else (without - with_) / max(with_, 1e-6)
        if ok and (best is None or cost < best[0]):
            best = (cost, j)
    if best is None or best[0] > tol:
        return None
    steps = solution.split("=")
    return "=".join(steps[: best[1] - 1] + steps[best[1] :])


@pytest.mark.parametrize(
    ("tol", "abs_tol", "comp_steps"),
    [(0.5, True, 1), (0.1, True, 1), (1e9, True, 1), (50.0, False, 2), (1e9, False, -1)],
)
def test_axe_removes_one_least_cost_step_of_solved_rows(tol, abs_tol, comp_steps):
    model = scripted(AXE_SCRIPTS)
    problems = list(AXE_SCRIPTS)
    solutions = [gt(p) for p in problems]
    res = axe(model, TOK, problems, solutions, tol=tol, abs_tol=abs_tol, comp_steps=comp_steps, **GEN)
    btok = btoken_id(model, 0.2)
    for problem, old, new in zip(problems, solutions, res.solutions):
        assert new == brute_force_axe(model, problem, old, tol, abs_tol, comp_steps, btok), problem
        if new is None:
            continue
        before, after = old.split("="), new.split("=")
        assert len(after) == len(before) - 1 and after[-1] == before[-1]  # one step gone, the answer stays
        gone = next((i for i in range(len(after)) if after[i] != before[i]), len(after))
        assert gone < len(before) - 1 and after == before[:gone] + before[gone + 1 :]
        assert rule_correct(problem, new)  # the row is still right (the problem is not in the solution text)
    assert res.solutions[2] is None and res.solutions[3] is None  # no step to remove; unsolved
    assert res.answer_acc == pytest.approx(4 / 5) and res.stats["solved"] == 4
    shortcut = res.solutions[0]
    if tol >= 0.5 and comp_steps == 1:  # the known shortcut costs about 0.25 (one token at p=0.1)
        assert shortcut == AXE_SCRIPTS["27+75"][1][0]
    if tol < 0.2 and abs_tol:
        assert shortcut is None
    vetoed = res.solutions[1]
    assert vetoed is None or vetoed != "9+10+23=3+9+10+20=20+22=42"  # the wrong-answer shortcut never wins


# --------------------------------------------------------------------------------------------
# Batching, modes, wrappers, bad input
# --------------------------------------------------------------------------------------------
def test_batched_results_equal_one_row_at_a_time():
    model = scripted({**STAR_SCRIPTS, **AXE_SCRIPTS})
    problems = [*STAR_SCRIPTS, *AXE_SCRIPTS]
    solutions = [gt(p) for p in problems]
    for fn, kwargs in (
        (augment, {"temperature": 0.0}),
        (axe, {"tol": 1e9, "abs_tol": False, "comp_steps": 2}),
    ):
        kwargs = {**kwargs, "blotch_p": 0.2, "max_new_tokens": 40}
        batched = fn(model, TOK, problems, solutions, batch_size=4, **kwargs)
        alone = [fn(model, TOK, [p], [s], batch_size=1, **kwargs).solutions[0] for p, s in zip(problems, solutions)]
        assert batched.solutions == alone and batched.kept >= 2


def test_training_mode_is_restored_and_ddp_wrapper_is_unwrapped():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = scripted(STAR_SCRIPTS).train()
    star(model, TOK, ["27+75"], temperature=0.0, **GEN)
    assert model.training
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blotch = tiny_blotch().train()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(blotch)
        problems, solutions = zip(*ROWS)
        kwargs = {"blotch_p": 0.4, "batch_size": 4}
        res = removal_costs(wrapped, TOK, problems, solutions, comp_steps=1, **kwargs)
        ref = removal_costs(blotch, TOK, problems, solutions, comp_steps=1, **kwargs)
        assert blotch.training and wrapped.training
        torch.testing.assert_close(torch.tensor(res.loss_without), torch.tensor(ref.loss_without))
        augment(wrapped, TOK, problems, solutions, temperature=0.0, max_new_tokens=8, **kwargs)
        assert blotch.training
    finally:
        dist.destroy_process_group()


def test_an_empty_shard_gives_an_empty_result():
    model = scripted({})
    for res in (
        star(model, TOK, [], temperature=1.0, rationalize=True, **GEN),
        augment(model, TOK, [], [], temperature=0.0, **GEN),
        axe(model, TOK, [], [], tol=1.0, abs_tol=True, comp_steps=1, **GEN),
    ):
        assert (res.solutions, res.tried, res.kept) == ([], 0, 0)
    assert len(removal_costs(model, TOK, [], [], comp_steps=1).row) == 0 and internalize([], 2) == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: removal_costs(m, TOK, ["3+4"], ["7"], comp_steps=0), "comp_steps=0"),
        (
            lambda m: axe(
                m, TOK, ["3+4"], [], tol=0.1, abs_tol=True, comp_steps=1, blotch_p=None, batch_size=2, max_new_tokens=4
            ),
            "solutions has 0 rows",
        ),
        (
            lambda m: star(m, TOK, ["3+4"], temperature=-1.0, blotch_p=None, batch_size=2, max_new_tokens=4),
            "temperature=-1.0",
        ),
        (
            lambda m: augment(m, TOK, ["3+4"], ["7"], temperature=0.0, blotch_p=None, batch_size=0, max_new_tokens=4),
            "batch_size=0",
        ),
        (lambda m: rationalize(m, TOK, ["3+4"], temperature=0.0), "temperature=0"),
    ],
)
def test_bad_arguments_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call(scripted({}))


def brute_force_original_costs(model, problem: str, solution: str, btok: int | None):
    """The original's axing numbers (``datas.axe_data``), one candidate at a time from character offsets: the
    tokens from the removed step's first character on; (with, without) per intermediate step."""
    n_real = model.config.vocab_size - model.config.n_btokens
    shift = 1 + (btok is not None)

    def ce(text: str):
        ids = torch.tensor(encode_rows(TOK, [text])[0])
        if btok is not None:
            ids = torch.cat([torch.tensor([btok]), ids])
        with torch.no_grad():
            return F.cross_entropy(model(input_ids=ids[None]).logits[0, :-1, :n_real], ids[1:], reduction="none")

    full = f"{problem}={solution}"
    eqs = [i for i, c in enumerate(full) if c == "="]
    out = []
    for j in range(1, len(solution.split("="))):
        ax = eqs[j - 1] + 1  # the removed step's first character; its tokens run to and with the next '='
        short = full[:ax] + full[eqs[j] + 1 :]
        ce_f, ce_s = ce(full), ce(short)
        tail_s = ce_s[ax + shift - 1 :]  # targets from the cut on (EOS included)
        out.append((float(ce_f[ax + shift - 1 :].sum() / len(tail_s)), float(tail_s.mean())))
    return out


def test_original_axing_costs_equal_the_originals_formula():
    model = tiny_blotch()
    problems, solutions = zip(*ROWS)
    rc = removal_costs(model, TOK, problems, solutions, comp_steps=1, blotch_p=0.4, batch_size=3)
    btok = btoken_id(model, 0.4)
    expected = [c for p, s in ROWS for c in brute_force_original_costs(model, p, s, btok)]
    torch.testing.assert_close(
        torch.tensor(rc.orig_with), torch.tensor([e[0] for e in expected]), atol=1e-4, rtol=1e-4, check_dtype=False
    )
    torch.testing.assert_close(
        torch.tensor(rc.orig_without), torch.tensor([e[1] for e in expected]), atol=1e-4, rtol=1e-4, check_dtype=False
    )
    # the baseline counts the removed step's tokens: it is larger than the same tokens' mean would be (negative control)
    assert (rc.orig_with > rc.loss_with).mean() > 0.5


def test_original_axing_rule_applies_both_limits():
    model = scripted(AXE_SCRIPTS)
    problems = list(AXE_SCRIPTS)
    solutions = [gt(p) for p in problems]
    free = axe(model, TOK, problems, solutions, tol=0.0, abs_tol=True, comp_steps=1, rule="original", **GEN)
    assert free.solutions[problems.index("27+75")] is not None  # no limits: a solved row always loses a step
    for limits in ({"abs_limit": -1e9}, {"rel_limit": -1e9}, {"abs_limit": 1e9, "rel_limit": -1e9}):
        none = axe(
            model, TOK, problems, solutions, tol=1e9, abs_tol=True, comp_steps=1, rule="original", **GEN, **limits
        )
        assert all(s is None for s in none.solutions), limits  # either limit alone vetoes
    with pytest.raises(ValueError, match="rule='fast' is not allowed"):
        axe(model, TOK, problems, solutions, tol=1.0, abs_tol=True, comp_steps=1, rule="fast", **GEN)
