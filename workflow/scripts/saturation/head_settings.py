"""The rank heads' training settings, one dataclass a protocol, torch-free: the workflow reads
their fields while building the DAG (each field but those set apart is the ``rank_heads``
key of its name), the training modules take them as arguments."""

from __future__ import annotations

from dataclasses import dataclass, fields

# Fields not read from rank_heads keys of their names: the heads' initialisation
# (rank_heads.init), the mixture's components (rank_heads.mixture_components), the run's seed.
SET_APART = ("init", "components", "seed")


@dataclass(frozen=True)
class HeadOptimiser:
    """What both protocols share: each head's AdamW, its peak rate from our formula
    (``learning_rate``), warm-up then cosine decay to ``min_lr_ratio``, weight decay, and its
    logits a chunk of ``chunk_tokens`` at a time."""

    lr_base: float
    lr_reference_params: int
    lr_exponent: float
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    chunk_tokens: int

    def learning_rate(self, trainable_params: int) -> float:
        """Our rule for a head's peak rate: lr_base * (lr_reference_params / its trainable
        parameters) ** lr_exponent."""
        return self.lr_base * (self.lr_reference_params / trainable_params) ** self.lr_exponent


@dataclass(frozen=True)
class HeadTraining(HeadOptimiser):
    """protocol cached: ``steps`` batches of ``batch_tokens`` from the feature cache."""

    steps: int
    batch_tokens: int
    seed: int
    init: str = "scaled"
    components: int = 4


@dataclass(frozen=True)
class StreamTraining(HeadOptimiser):
    """protocol paper: the backbone's stream, each training token once."""

    batch_sequences: int  # sequences per optimiser step (the paper: 256)
    batch_size: int  # sequences per backbone forward pass
    sequence_length: int
    lr_grid: tuple[float, ...] | None  # None: one rate a head, from the formula
    grad_clip: float | None
    init: str
    components: int
    seed: int

    def peak_rates(self, params: int) -> list[float]:
        return list(self.lr_grid) if self.lr_grid else [self.learning_rate(params)]


def rank_heads_keys(settings) -> tuple[str, ...]:
    """The ``rank_heads`` keys a settings class reads, in its fields' order."""
    return tuple(f.name for f in fields(settings) if f.name not in SET_APART)
