"""Corpus BLEU through sacreBLEU (Post, 2018) as a local `evaluate` metric, so nothing is fetched from the Hub and
the score is the one papers report: sacreBLEU's tokenizer, smoothing and brevity penalty, with its signature.

Load it with `evaluate.load("<path>/hf_experiments/compression/metrics/bleu")` or
`hf_experiments.compression.metrics.load_local_metric("bleu")`.
"""

from __future__ import annotations

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_DESCRIPTION = """Corpus BLEU computed by sacreBLEU: clipped n-gram precisions (n = 1..max_order) pooled over the
corpus, their geometric mean, times a brevity penalty exp(1 - r/c) when the candidates are shorter than their
closest references. `bleu` is in [0, 1]; `score` is sacreBLEU's 0-100 number and `signature` says how it was
computed (references, case, tokenizer, smoothing, version), as sacreBLEU asks papers to report it."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): candidate sentences.
    references (`list[list[str]]`): one or more references per candidate (the number may vary).
    tokenize (`str`, defaults to "13a"): sacreBLEU's tokenizer; "none" for text that already is tokens
        (e.g. token ids joined by spaces).
    smooth_method (`str`, defaults to "exp"): "exp", "none", "floor" or "add-k" (sacreBLEU's).
    smooth_value (`float`, optional): the value of "floor" / "add-k".
    lowercase (`bool`, defaults to False): case-insensitive BLEU.
    max_order (`int`, defaults to 4): longest n-gram.
Returns:
    bleu, score, precisions (list, in [0, 1]), brevity_penalty, length_ratio, translation_length,
    reference_length, signature.
Examples:
    >>> bleu = evaluate.load("hf_experiments/compression/metrics/bleu")
    >>> out = bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    >>> round(out["score"], 2), out["signature"].split("|version")[0]
    (100.0, 'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp')
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    """Corpus BLEU by `sacrebleu.metrics.BLEU`; references regrouped into sacreBLEU's reference streams."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018; "
            "Papineni et al., BLEU: automatic evaluation of machine translation, ACL 2002",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(
        self,
        predictions,
        references,
        tokenize: str = "13a",
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        lowercase: bool = False,
        max_order: int = 4,
    ) -> dict:
        if smooth_method not in BLEU.SMOOTH_DEFAULTS:
            raise ValueError(
                f"smooth_method={smooth_method!r} is invalid; expected one of {list(BLEU.SMOOTH_DEFAULTS)}"
            )
        metric = BLEU(
            lowercase=lowercase,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            max_ngram_order=max_order,
        )
        # sacreBLEU takes one stream per reference position; a candidate with fewer references has None there
        n_refs = max((len(refs) for refs in references), default=1)
        streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(n_refs)]
        score = metric.corpus_score(list(predictions), streams)
        return {
            "bleu": score.score / 100,
            "score": score.score,
            "precisions": [p / 100 for p in score.precisions],
            "brevity_penalty": score.bp,
            "length_ratio": score.ratio,
            "translation_length": score.sys_len,
            "reference_length": score.ref_len,
            "signature": str(metric.get_signature()),
        }
