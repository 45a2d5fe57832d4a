"""Per-checkpoint measurements: cross-entropy, layer-wise anisotropy, the LM head's singular
spectrum and singular entropy, and weight fingerprints.

Everything is exact and streamed: one forward pass over the evaluation sample, O(layers x d)
accumulator state, float64 accumulation whatever the model's dtype.
"""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np
import torch

log = logging.getLogger(__name__)


class MetricError(ValueError):
    """A metric that is undefined for its input; the message says why."""


# --- anisotropy ----------------------------------------------------------------------------


class AnisotropyAccumulator:
    """Exact mean pairwise cosine similarity of a stream of vectors.

    With unit vectors u_i, mean_{i != j} u_i . u_j = (||sum u_i||^2 - n) / (n (n - 1)), so the
    state is one float64 vector of size d and a count: no n x n matrix, no stored states.
    Zero vectors have no direction; they are counted and left out.
    """

    def __init__(self, dim: int, device="cpu"):
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.n = 0
        self.n_zero = 0

    def update(self, h: torch.Tensor) -> None:
        h = h.reshape(-1, h.shape[-1]).to(torch.float64)
        norms = torch.linalg.vector_norm(h, dim=1)
        if not torch.isfinite(norms).all():  # a NaN or inf anywhere in a row shows here
            raise MetricError("hidden states contain NaN or infinite values")
        keep = norms > 0
        inv = torch.where(keep, 1.0 / norms, torch.zeros_like(norms))
        self.sum += inv @ h  # sum of unit vectors as one matrix-vector product
        n_keep = int(keep.sum())
        self.n += n_keep
        self.n_zero += len(norms) - n_keep

    @property
    def value(self) -> float:
        if self.n < 2:
            raise MetricError(f"anisotropy needs at least 2 non-zero vectors, got {self.n}")
        s2 = float(self.sum @ self.sum)
        return (s2 - self.n) / (self.n * (self.n - 1))


def anisotropy(h: torch.Tensor | np.ndarray) -> float:
    acc = AnisotropyAccumulator(h.shape[-1])
    acc.update(torch.as_tensor(h))
    return acc.value


# --- head spectrum -------------------------------------------------------------------------


def head_gram(w: torch.Tensor | np.ndarray) -> np.ndarray:
    """The small Gram matrix of a V x d matrix in float64 (W^T W for a tall W, else W W^T)."""
    w = torch.as_tensor(w).detach()
    if w.ndim != 2:
        raise MetricError(f"the head must be a matrix, got shape {tuple(w.shape)}")
    w = w.to("cpu", torch.float64).numpy()
    # numpy turns a.T @ a into a symmetric rank-k update (BLAS syrk): half a GEMM's work.
    return w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T


def singular_values(w: torch.Tensor | np.ndarray, gram: np.ndarray | None = None) -> np.ndarray:
    """All min(V, d) singular values of a V x d matrix, descending, in float64.

    Computed as the square roots of the eigenvalues of the small Gram matrix (W^T W for a
    tall W), in float64: O(V d^2) like an SVD but a single matrix product plus a d x d
    symmetric eigensolve. The eigenvalues carry an absolute error of about eps * sigma_max^2,
    so sigma_i is exact to a relative 1e-9 whenever sigma_i > ~1e-3 sigma_max; values below
    eps^(1/2) sigma_max (numerically zero) come out as ~1e-8 sigma_max or 0. ``gram``:
    ``head_gram(w)``, where it was already computed.
    """
    gram = head_gram(w) if gram is None else gram
    if not np.isfinite(gram).all():  # NaN or inf anywhere in W reaches the Gram matrix
        raise MetricError("the head's weights contain NaN or infinite values")
    eig = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    return np.sqrt(eig)[::-1].copy()


def spectrum_metrics(sigma: np.ndarray) -> dict[str, float]:
    """Singular entropy and friends from a spectrum.

    singular_entropy = KL(sigma_hat || uniform) = log d - H(sigma_hat), sigma_hat = sigma / sum
    sigma; effective_rank = exp H(sigma_hat); stable_rank = sum sigma^2 / sigma_max^2.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    total = sigma.sum()
    if not total > 0:
        raise MetricError("the head is all zeros: its spectrum has no distribution")
    p = sigma / total
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    return {
        "singular_entropy": math.log(len(sigma)) - entropy,
        "spectral_entropy": entropy,
        "effective_rank": math.exp(entropy),
        "stable_rank": float((sigma**2).sum() / sigma.max() ** 2),
        "spectral_norm": float(sigma.max()),
        "frobenius_norm": float(np.sqrt((sigma**2).sum())),
    }


# --- fingerprints --------------------------------------------------------------------------


def tensor_digest(h, name: str, t: torch.Tensor) -> None:
    # Hash float32 bytes so a checkpoint hashes the same whatever dtype it is loaded in
    # (fp16 and bf16 widen to fp32 exactly).
    t = t.detach().to("cpu", torch.float32).contiguous()
    h.update(f"{name}:{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes())


def fingerprints(model) -> dict[str, str]:
    """sha256 of the head and of every tensor, so revisions serving identical weights show."""
    head = hashlib.sha256()
    tensor_digest(head, "head", model.get_output_embeddings().weight)
    every = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        tensor_digest(every, name, t)
    return {"head_fingerprint": head.hexdigest(), "weights_fingerprint": every.hexdigest()}


def parameter_counts(model) -> dict[str, int]:
    """Total parameters, and without embeddings: every ``nn.Embedding`` (tokens, learned
    positions) and the output head, tied or not."""
    params = {id(p): p.numel() for p in model.parameters()}
    emb = {id(model.get_output_embeddings().weight)}
    emb.update(id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding))
    total = sum(params.values())
    return {
        "n_params": total,
        "n_params_no_embedding": total - sum(params[i] for i in emb if i in params),
    }


# --- the forward pass ----------------------------------------------------------------------


def find_blocks(model) -> torch.nn.ModuleList:
    """The transformer blocks of any Hugging Face causal LM: the ModuleList whose length is
    the configured number of layers (GPT-NeoX ``layers``, GPT-2 ``h``, OPT ``decoder.layers``,
    Llama/Gemma ``layers``)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise MetricError(f"cannot find the {n} transformer blocks of {type(model).__name__}")


def chunk_documents(
    docs: list[np.ndarray], sequence_length: int, with_documents: bool = False
) -> list[np.ndarray] | tuple[list[np.ndarray], list[int]]:
    """Cut documents into sequences of at most ``sequence_length`` tokens that never cross a
    document boundary. Consecutive pieces of a document share one token (the next piece
    starts at the last token of the previous one), so every token but a document's first is
    predicted exactly once. Single-token documents predict nothing and are dropped.
    ``with_documents``: also return the index of each piece's document."""
    out, owner = [], []
    stride = max(sequence_length - 1, 1)
    for i, doc in enumerate(docs):
        for start in range(0, max(len(doc) - 1, 0), stride):
            out.append(doc[start : start + sequence_length])
            owner.append(i)
    return (out, owner) if with_documents else out


HALVES = ("select", "report")


def document_half(index: int) -> str:
    """The half of the evaluation sample a document belongs to: even positions select the
    best checkpoint, odd positions report its loss (the sample's order is already seeded and
    random, so the halves are two random halves of the same text)."""
    return HALVES[index % 2]


def pad_batch(batch: list[np.ndarray], device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids and the mask of real positions. Causal models never let a
    real position see the padding to its right."""
    width = max(len(s) for s in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, s in enumerate(batch):
        ids[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
        mask[i, : len(s)] = True
    return ids.to(device), mask.to(device)


class LayerTaps:
    """Forward hooks that stream each layer's hidden states into anisotropy accumulators.

    Layer 0 is the embedding output (the first block's input), layers 1..L the block outputs,
    layer L + 1 the final-norm output that feeds the head (the head's input).
    """

    def __init__(self, model, device):
        self.blocks = find_blocks(model)
        self.n_layers = len(self.blocks)
        # Sized by the first states each layer sees: the head's input may be narrower than
        # the blocks (OPT's project_out).
        self.device = device
        self.acc: list[AnisotropyAccumulator | None] = [None] * (self.n_layers + 2)
        self.mask = None
        self.head_input = None  # the batch's head inputs, every position
        self.handles = [
            self.blocks[0].register_forward_pre_hook(self.pre_hook(0), with_kwargs=True)
        ]
        for i, block in enumerate(self.blocks, start=1):
            self.handles.append(block.register_forward_hook(self.hook(i)))
        head = model.get_output_embeddings()
        self.handles.append(
            head.register_forward_pre_hook(self.pre_hook(self.n_layers + 1), with_kwargs=True)
        )

    def take(self, layer, h):
        if isinstance(h, tuple):
            h = h[0]
        if self.acc[layer] is None:
            self.acc[layer] = AnisotropyAccumulator(h.shape[-1], self.device)
        self.acc[layer].update(h[self.mask])
        if layer == self.n_layers + 1:
            self.head_input = h

    def pre_hook(self, layer):
        def hook(module, args, kwargs):
            self.take(layer, args[0] if args else kwargs["hidden_states"])

        return hook

    def hook(self, layer):
        def hook(module, args, output):
            self.take(layer, output)

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def forward_metrics(
    model,
    docs: list[np.ndarray],
    sequence_length: int,
    batch_size: int,
    device="cpu",
    progress_file=None,
    extras=None,
) -> dict:
    """One forward pass over the sample: loss, accuracy and every layer's anisotropy; with
    ``extras`` (a ``bottleneck.BeyondPaper``), its accumulators fed each batch.

    The loss is also reported on each half of the documents (``loss_select``: even
    positions, ``loss_report``: odd positions; see :func:`document_half`), so a best
    checkpoint can be chosen on one half and reported on the other.
    """
    from tqdm import tqdm

    seqs, owner = chunk_documents(docs, sequence_length, with_documents=True)
    n_predicted = sum(len(s) - 1 for s in seqs)
    half = halves_of(owner, n_predicted)
    taps = LayerTaps(model, device)
    nll = torch.zeros(len(seqs), dtype=torch.float64, device=device)  # per sequence
    correct = 0
    try:
        with torch.inference_mode():
            for start in tqdm(
                range(0, len(seqs), batch_size),
                file=progress_file,
                mininterval=10,
                desc="measure",
            ):
                ids, mask = pad_batch(seqs[start : start + batch_size], device)
                taps.mask = mask
                logits = model(input_ids=ids, attention_mask=mask.long()).logits
                logits, target = logits[:, :-1], ids[:, 1:]
                valid = mask[:, 1:]
                logp = torch.log_softmax(logits[valid].float(), dim=-1)
                if not torch.isfinite(logp).all():
                    raise MetricError("the model's logits contain NaN or infinite values")
                t = target[valid]
                token_nll = -logp.gather(1, t[:, None])[:, 0].double()
                row = torch.nonzero(valid)[:, 0]  # the sequence of each valid position
                nll.index_add_(0, start + row, token_nll)
                correct += int((logp.argmax(dim=1) == t).sum())
                if extras is not None:  # the head's inputs: all, and those predicting t
                    h = taps.head_input
                    extras.update(h[mask], h[:, :-1][valid], t, logp)
    finally:
        taps.remove()
    silent = [i for i, acc in enumerate(taps.acc) if acc is None]
    if silent:
        raise MetricError(
            f"{type(model).__name__}: layers {silent} of 0..{taps.n_layers + 1} saw no hidden "
            "states (embedding output, block outputs, head input)"
        )
    nll = nll.cpu().numpy()
    counts = np.array([len(s) - 1 for s in seqs], dtype=np.int64)
    rows = {
        "loss": float(nll.sum()) / n_predicted,
        "accuracy": correct / n_predicted,
        "n_predicted_tokens": n_predicted,
        "n_sequences": len(seqs),
        "n_layers": taps.n_layers,
        "anisotropy": [acc.value for acc in taps.acc],
    }
    for k, name in enumerate(HALVES):
        rows[f"loss_{name}"] = float(nll[half == k].sum()) / int(counts[half == k].sum())
    rows["documents"] = document_sums(owner, nll, counts, len(docs))
    return rows


def halves_of(owner: list[int], n_predicted: int) -> np.ndarray:
    """Each piece's half (an index into HALVES) from the document it belongs to; a sample
    with nothing to predict, or whose documents fall in one half only, is refused."""
    if n_predicted == 0:
        raise MetricError(
            "the evaluation sample has no document of 2 or more tokens: nothing to predict"
        )
    half = np.array([HALVES.index(document_half(i)) for i in owner], dtype=np.int64)
    if len(set(half.tolist())) < 2:
        raise MetricError(
            f"the evaluation sample has {len(set(owner))} document(s) of 2 or more tokens; "
            "at least 2 are needed to select the best checkpoint on one half and report it "
            "on the other"
        )
    return half


def document_sums(owner, nll: np.ndarray, counts: np.ndarray, n_documents: int) -> dict:
    """Each document's summed loss and predicted tokens from its pieces', for paired
    comparisons of two checkpoints on the same documents (those that predict nothing are
    left out)."""
    owner = np.asarray(owner, dtype=np.int64)
    doc_nll = np.bincount(owner, weights=nll, minlength=n_documents)
    doc_n = np.bincount(owner, weights=counts, minlength=n_documents).astype(np.int64)
    kept = np.flatnonzero(doc_n)
    return {"document": kept, "nll": doc_nll[kept], "n_predicted": doc_n[kept]}
