"""Corpus BLEU-4 (Papineni et al., 2002) as a local `evaluate` metric, so nothing is fetched from the Hub.

Load it with `evaluate.load("<path>/hf_experiments/compression/metrics/bleu")` or
`hf_experiments.compression.metrics.load_local_metric("bleu")`.
"""

from __future__ import annotations

from collections import Counter

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Corpus BLEU: clipped n-gram precisions (n = 1..max_order) pooled over the corpus, their
geometric mean, times a brevity penalty exp(1 - r/c) when candidates are shorter than their closest
references.
Sentences are split on whitespace (token-id sequences joined by spaces work as they are)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): candidate sentences.
    references (`list[list[str]]`): one or more references per candidate.
    max_order (`int`, defaults to 4): longest n-gram.
    smooth (`bool`, defaults to False): add-one smoothing of the precisions (Lin & Och, 2004), so a corpus
        with no matching 4-gram does not score exactly 0.
Returns:
    bleu, precisions (list), brevity_penalty, length_ratio, translation_length, reference_length.
Examples:
    >>> bleu = evaluate.load("hf_experiments/compression/metrics/bleu")
    >>> bleu.compute(predictions=["1 2 3 4"], references=[["1 2 3 4"]])["bleu"]
    1.0
"""


def _ngram_counts(tokens: list[str], max_order: int) -> Counter:
    """Counts of every n-gram of `tokens`, n = 1..max_order."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    """Corpus BLEU with brevity penalty, implemented here in a few lines of numpy."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Papineni et al., BLEU: automatic evaluation of machine translation, ACL 2002",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, max_order: int = 4, smooth: bool = False) -> dict:
        matches = np.zeros(max_order)  # clipped n-gram matches, pooled over the corpus
        possible = np.zeros(max_order)  # candidate n-grams
        cand_len = ref_len = 0
        for prediction, refs in zip(predictions, references):
            cand = prediction.split()
            ref_tokens = [ref.split() for ref in refs]
            max_ref_counts: Counter = Counter()
            for ref in ref_tokens:
                max_ref_counts |= _ngram_counts(ref, max_order)  # `|` keeps the max count per n-gram
            for gram, count in (_ngram_counts(cand, max_order) & max_ref_counts).items():  # `&` clips
                matches[len(gram) - 1] += count
            possible += np.maximum(len(cand) - np.arange(max_order), 0)
            cand_len += len(cand)
            # the closest reference length; ties go to the shorter reference
            ref_len += min((abs(len(ref) - len(cand)), len(ref)) for ref in ref_tokens)[1]

        if smooth:
            precisions = (matches + 1.0) / (possible + 1.0)
        else:
            precisions = np.divide(matches, possible, out=np.zeros(max_order), where=possible > 0)
        geo_mean = float(np.exp(np.log(precisions).mean())) if precisions.min() > 0 else 0.0
        ratio = cand_len / ref_len if ref_len else 0.0
        brevity_penalty = 1.0 if ratio > 1.0 else (float(np.exp(1.0 - 1.0 / ratio)) if ratio > 0 else 0.0)
        return {
            "bleu": geo_mean * brevity_penalty,
            "precisions": precisions.tolist(),
            "brevity_penalty": brevity_penalty,
            "length_ratio": ratio,
            "translation_length": cand_len,
            "reference_length": ref_len,
        }
