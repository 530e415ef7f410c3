"""Sequence-to-sequence RNN (GRU or LSTM) that stores a sequence in its final state and repeats it.

One shared RNN does both jobs, as in the paper: it reads the symbols (packed, so each row's state is taken
after its own last symbol), and, started from that state, is fed `[SOS, y0, ..., y_{T-2}]` (teacher forcing)
or the constant "no input" token at every step, predicting `y` through a linear readout. The loss is the token
cross-entropy summed over the batch and divided by `num_items_in_batch` when the Trainer passes it, so
gradient accumulation over micro-batches of any sizes equals one step on the whole batch.

Whole-sequence exact match under teacher forcing equals exact match of greedy decoding: if every step's argmax
is right, each step was fed exactly what greedy decoding would have fed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_recurrent import RecurrentConfig


@dataclass
class RecurrentOutput(ModelOutput):
    """`loss` (scalar, when labels are given) and `logits` `(B, T, n_symbols)`."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def token_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over the labelled tokens (-100 = none): mean over this batch, or sum /
    `num_items_in_batch`."""
    total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        return total / labels.ne(-100).sum().clamp(min=1)
    return total / num_items_in_batch


def exact_match(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: True when every labelled token is predicted (argmax) correctly. `(B,)` bool."""
    ok = (logits.argmax(-1) == labels) | labels.eq(-100)  # (B, T)
    return ok.all(-1)


class RecurrentPreTrainedModel(PreTrainedModel):
    config: RecurrentConfig
    config_class = RecurrentConfig
    base_model_prefix = "recurrent"
    # The loss honours `num_items_in_batch` (see module docstring): exact gradient accumulation.
    accepts_loss_kwargs = True

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default initialisation of each layer, as the original used."""
        if isinstance(module, (nn.GRU, nn.LSTM, nn.Linear, nn.Embedding)):
            module.reset_parameters()


class RecurrentSeq2Seq(RecurrentPreTrainedModel):
    """Encode a sequence into the RNN state, decode it back (see module docstring)."""

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__(config)
        emb = config.embedding_size or config.state_size
        self.embedding = nn.Embedding(config.n_symbols + 2, emb)  # + SOS + "no input"
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn(emb, config.state_size, num_layers=config.n_layers, batch_first=True)
        self.readout = nn.Linear(config.state_size, config.n_symbols)
        self.post_init()

    # ----- state <-> flat vector -----

    def _flatten_state(self, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        parts = state if isinstance(state, tuple) else (state,)  # each (layers, B, H)
        return torch.cat([p.transpose(0, 1).flatten(1) for p in parts], dim=-1)  # (B, S)

    def _unflatten_state(self, flat: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        parts = flat.view(flat.shape[0], -1, c.n_layers, c.state_size).permute(1, 2, 0, 3)  # (k, layers, B, H)
        parts = [p.contiguous() for p in parts]
        return (parts[0], parts[1]) if c.cell == "lstm" else parts[0]

    # ----- the two halves -----

    def encode(self, input_ids: torch.LongTensor, length: torch.LongTensor) -> torch.Tensor:
        """Final state after each row's `length` symbols, flattened: `(B, flat_state_size)`."""
        x = self.embedding(input_ids.clamp(min=0))  # (B, T, E); padding is never read
        if bool((length == x.shape[1]).all()):  # no padding (fixed-length data): the same state, 1.4-1.5x faster
            _, state = self.rnn(x)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, length.cpu(), batch_first=True, enforce_sorted=False)
            _, state = self.rnn(packed)  # rows back in input order
        return self._flatten_state(state)

    def decoder_inputs(self, targets: torch.LongTensor) -> torch.LongTensor:
        """`[SOS, y0, ..., y_{T-2}]` (teacher forcing), or the "no input" token everywhere. `(B, T)`."""
        c = self.config
        if c.no_input:
            return torch.full_like(targets, c.no_input_token_id)
        shifted = F.pad(targets[:, :-1].clamp(min=0), (1, 0), value=c.sos_token_id)
        return shifted

    def decode(self, state: torch.Tensor, targets: torch.LongTensor) -> torch.Tensor:
        """Logits `(B, T, n_symbols)` of the sequence stored in the flat `state` `(B, S)`; `targets` `(B, T)`
        are fed back (teacher forcing) unless `no_input`. Positions past a row's length are computed but
        unused."""
        x = self.embedding(self.decoder_inputs(targets))  # (B, T, E)
        out, _ = self.rnn(x, self._unflatten_state(state))  # (B, T, H)
        return self.readout(out)

    def forward(
        self,
        input_ids: torch.LongTensor,
        length: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> RecurrentOutput:
        """`input_ids` `(B, T)` padded, `length` `(B,)`; `labels` = the sequence to output, -100 on
        padding."""
        targets = input_ids if labels is None else labels
        logits = self.decode(self.encode(input_ids, length), targets)
        loss = None if labels is None else token_loss(logits, labels, num_items_in_batch)
        return RecurrentOutput(loss=loss, logits=logits)
