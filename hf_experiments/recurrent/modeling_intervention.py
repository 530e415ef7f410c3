"""Stage two of the recurrent storage experiments: with the trained RNN frozen, learn an intervention on its
state (or a probe that reads it) and measure how often it works.

An intervention corrupts the input, encodes it with the frozen RNN, repairs the *state* and decodes it with the
frozen RNN; the target is the uncorrupted sequence. `linear` swaps learnt linear subspaces between paired
sequences, `onion` adds back one position's contribution at the magnitude it is stored at, and `probe_mlp` /
`probe_gru` decode the state with a new network. Evaluation corruptions are seeded, so they repeat.

Design: `docs/recurrent_storage.md`, section "Interventions".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_intervention import InterventionConfig
from .configuration_recurrent import RecurrentConfig
from .modeling_recurrent import RecurrentOutput, RecurrentSeq2Seq, token_loss


# ------------------------------------------------------------------------------------------------------------
# Corruptions
# ------------------------------------------------------------------------------------------------------------
def pair_swap_corruption(
    input_ids: torch.Tensor,
    length: torch.Tensor,
    swap_prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair the rows at random and swap symbols between partners at random positions.

    Returns the corrupted ids `(B, T)`, each row's partner `(B,)` (an odd row out is its own partner) and the
    swapped positions `(B, T)` bool, identical for both partners and only below the shorter partner's length.
    """
    B, T = input_ids.shape
    dev = input_ids.device
    perm = torch.randperm(B, generator=generator, device=dev)
    half = B // 2
    a, b = perm[:half], perm[half : 2 * half]
    partner = torch.arange(B, device=dev)
    partner[a], partner[b] = b, a
    limit = torch.minimum(length[a], length[b]).to(dev)  # (half,)
    raw = torch.rand(half, T, generator=generator, device=dev) < swap_prob
    raw &= torch.arange(T, device=dev) < limit[:, None]  # (half, T)
    swap = torch.zeros(B, T, dtype=torch.bool, device=dev)
    swap[a], swap[b] = raw, raw
    return torch.where(swap, input_ids[partner], input_ids), partner, swap


def replace_one_corruption(
    input_ids: torch.Tensor, length: torch.Tensor, n_symbols: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace one random position per row by a uniformly drawn symbol (possibly the same one).

    Returns the corrupted ids `(B, T)`, the position `(B,)`, the old and the new symbol `(B,)` each.
    """
    B = input_ids.shape[0]
    dev = input_ids.device
    rows = torch.arange(B, device=dev)
    pos = (torch.rand(B, generator=generator, device=dev) * length.to(dev)).long()
    new = torch.randint(0, n_symbols, (B,), generator=generator, device=dev)
    old = input_ids[rows, pos]
    corrupted = input_ids.clone()
    corrupted[rows, pos] = new
    return corrupted, pos, old, new


# ------------------------------------------------------------------------------------------------------------
# Interventions and probes
# ------------------------------------------------------------------------------------------------------------
class Rotation(nn.Module):
    """A learnt rotation `R = Q0 · exp(A - Aᵀ)`: `Q0` a fixed random orthogonal start, `A` trained from 0.

    The same trivialisation as `torch.nn.utils.parametrizations.orthogonal`, written out because that one
    cannot be built on the meta device, which `from_pretrained` uses.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        q, r = torch.linalg.qr(torch.randn(size, size))
        self.register_buffer("base", q * torch.sign(torch.diagonal(r)))  # Haar-random orthogonal
        self.skew = nn.Parameter(torch.zeros(size, size))

    def forward(self) -> torch.Tensor:
        return self.base @ torch.linalg.matrix_exp(self.skew - self.skew.T)  # (S, S)


class LinearSwapIntervention(nn.Module):
    """Orthogonal rotation with dimensions assigned to positions; swaps partners' dimensions (module
    docstring)."""

    def __init__(self, state_size: int, n_positions: int, mask_reg: float = 0.001) -> None:
        super().__init__()
        self.n_positions, self.mask_reg = n_positions, mask_reg
        self.rotation = Rotation(state_size)
        # Column n_positions = "belongs to no position" (kept from the row's own state).
        self.assign_logits = nn.Parameter(torch.randn(state_size, n_positions + 1) * 0.01)

    def assignment(self) -> torch.Tensor:
        """One-hot `(S, P + 1)` position of each rotated dimension: a hard Gumbel-softmax sample in training
        (straight-through gradients), the argmax otherwise."""
        if self.training:
            return F.gumbel_softmax(self.assign_logits, tau=1.0, hard=True)
        return F.one_hot(self.assign_logits.argmax(-1), self.n_positions + 1).to(self.assign_logits.dtype)

    def regularizer(self) -> torch.Tensor:
        """The original's pull towards "no position" for dimensions that are not needed."""
        return self.mask_reg * (self.assign_logits[:, :-1].mean() - self.assign_logits[:, -1].mean())

    def forward(self, h: torch.Tensor, partner: torch.Tensor, swap: torch.Tensor) -> torch.Tensor:
        """Repair `h` `(B, S)`: take the partner's dimensions of every position in `swap` `(B, T<=P)`."""
        weight = self.rotation()  # (S, S), orthogonal
        z = h @ weight.T  # (B, S) rotated
        take = F.pad(swap.to(z.dtype), (0, self.n_positions + 1 - swap.shape[1]))  # (B, P + 1); "none" never
        sel = take @ self.assignment().T  # (B, S): 1 where a dimension comes from the partner
        z = z + sel * (z[partner] - z)
        return z @ weight  # rotate back


class OnionIntervention(nn.Module):
    """Adds back one position's symbol at that position's magnitude (module docstring)."""

    def __init__(
        self,
        state_size: int,
        n_symbols: int,
        linear_term: bool = True,
        fixed_scale: bool = False,
        linear_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, state_size)
        self.g = nn.Parameter(torch.ones(state_size))
        self.b = nn.Parameter(torch.zeros(state_size))
        if fixed_scale:
            self.register_buffer("gamma", torch.ones(state_size))
        else:
            self.gamma = nn.Parameter(torch.full((state_size,), 0.9))
        if linear_term and not fixed_scale:
            self.lin = nn.Parameter(torch.full((state_size,), float(linear_init)))  # the original: ones
        else:
            self.register_buffer("lin", torch.zeros(state_size))

    def scale(self, pos: torch.Tensor) -> torch.Tensor:
        """Per-dimension magnitude of position `pos` `(B,)`: `(B, S)`."""
        p = pos.to(self.g.dtype)[:, None]
        return self.g * self.gamma.pow(p) + p * self.lin + self.b

    def forward(self, h: torch.Tensor, pos: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Repair `h` `(B, S)` whose input had `new` instead of `old` at `pos` (all `(B,)`)."""
        delta = self.embedding(old).tanh() - self.embedding(new).tanh()  # (B, S)
        return h + delta * self.scale(pos)


class MLPProbe(nn.Module):
    """All positions at once from the state: `layers - 1` hidden ReLU layers, then `(n_positions x
    n_symbols)`."""

    def __init__(self, state_size: int, n_symbols: int, n_positions: int, layers: int = 1) -> None:
        super().__init__()
        self.n_positions, self.n_symbols = n_positions, n_symbols
        hidden = [m for _ in range(layers - 1) for m in (nn.Linear(state_size, state_size), nn.ReLU())]
        self.net = nn.Sequential(*hidden, nn.Linear(state_size, n_positions * n_symbols))

    def forward(self, state: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.net(state).view(state.shape[0], self.n_positions, self.n_symbols)  # (B, P, V)
        return logits[:, : targets.shape[1]]


class GRUProbe(nn.Module):
    """A new GRU decoder started from the state, teacher-forced after SOS."""

    def __init__(self, state_size: int, n_symbols: int) -> None:
        super().__init__()
        self.n_symbols = n_symbols
        self.embedding = nn.Embedding(n_symbols + 1, state_size)  # + SOS
        self.gru = nn.GRU(state_size, state_size, batch_first=True)
        self.readout = nn.Linear(state_size, n_symbols)

    def forward(self, state: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        fed = F.pad(targets[:, :-1].clamp(min=0), (1, 0), value=self.n_symbols)  # (B, T)
        out, _ = self.gru(self.embedding(fed), state[None].contiguous())  # (B, T, S)
        return self.readout(out)


class RecurrentIntervention(PreTrainedModel):
    """Frozen RNN (`self.rnn`) + trainable intervention or probe (`self.intervention`)."""

    config: InterventionConfig
    config_class = InterventionConfig
    base_model_prefix = "intervention_model"
    accepts_loss_kwargs = True

    def __init__(self, config: InterventionConfig, rnn: RecurrentSeq2Seq | None = None) -> None:
        super().__init__(config)
        self.rnn = rnn if rnn is not None else RecurrentSeq2Seq(RecurrentConfig(**(config.recurrent or {})))
        rc = self.rnn.config
        S = rc.flat_state_size
        if config.method == "linear":
            self.intervention = LinearSwapIntervention(S, config.n_positions, config.mask_reg)
        elif config.method == "onion":
            self.intervention = OnionIntervention(
                S, rc.n_symbols, config.onion_linear_term, config.onion_fixed_scale, config.onion_linear_init
            )
        elif config.method == "probe_mlp":
            self.intervention = MLPProbe(S, rc.n_symbols, config.n_positions, config.probe_layers)
        else:
            self.intervention = GRUProbe(S, rc.n_symbols)
        self.rnn.requires_grad_(False)
        self.post_init()

    @classmethod
    def around(cls, rnn: RecurrentSeq2Seq, method: str, n_positions: int, **options) -> RecurrentIntervention:
        """Wrap a trained RNN (its weights are kept; only the intervention is new)."""
        config = InterventionConfig(recurrent=rnn.config.to_dict(), method=method, n_positions=n_positions, **options)
        return cls(config, rnn=rnn)

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch defaults for the new layers; the frozen RNN keeps its trained weights."""
        if isinstance(module, (nn.GRU, nn.Linear, nn.Embedding)) and not any(
            p is q for p in module.parameters() for q in self.rnn.parameters()
        ):
            module.reset_parameters()

    def train(self, mode: bool = True) -> RecurrentIntervention:
        super().train(mode)
        self.rnn.eval()  # frozen: always in inference mode
        return self

    def _generator(self, input_ids: torch.Tensor) -> torch.Generator | None:
        if self.training:
            return None
        g = torch.Generator(device=input_ids.device)
        g.manual_seed(self.config.eval_seed * 1_000_003 + int(input_ids.clamp(min=0).sum()) + input_ids.numel())
        return g

    def forward(
        self,
        input_ids: torch.LongTensor,
        length: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> RecurrentOutput:
        """As `RecurrentSeq2Seq.forward`; the logits are those of the repaired state (or of the probe)."""
        method = self.config.method
        targets = input_ids if labels is None else labels
        gen = self._generator(input_ids)
        reg = None
        if method.startswith("probe"):
            with torch.no_grad():
                state = self.rnn.encode(input_ids, length)
            logits = self.intervention(state, targets)
        else:
            if method == "linear":
                corrupted, partner, swap = pair_swap_corruption(input_ids, length, self.config.swap_prob, gen)
            else:
                corrupted, pos, old, new = replace_one_corruption(input_ids, length, self.rnn.config.n_symbols, gen)
            with torch.no_grad():
                state = self.rnn.encode(corrupted, length)
            if method == "linear":
                state = self.intervention(state, partner, swap)
                reg = self.intervention.regularizer() if self.training else None
            else:
                state = self.intervention(state, pos, old, new)
            logits = self.rnn.decode(state, targets)
        loss = None
        if labels is not None:
            loss = token_loss(logits, labels, num_items_in_batch)
            if reg is not None:  # once per update: each micro-batch adds its share of the items
                share = 1.0 if num_items_in_batch is None else labels.ne(-100).sum() / num_items_in_batch
                loss = loss + reg * share
        return RecurrentOutput(loss=loss, logits=logits)
