"""Beyond the paper, per checkpoint, in the measuring pass (``metrics.parts``; defined in
docs/analysis.md):

- ``truncation``: Theorem 5.3 measured. The head truncated to rank k by its SVD,
  W_k = U_k Σ_k V_kᵀ, applied to the same head inputs: its loss, the gap ΔL(k) to the full
  head's, T(k) = sqrt(Σ_{i>k} σᵢ²), the W-error T(k)/‖W‖_F and ΔL(k)/T(k), the bound's
  constant observed.
- ``gradient``: the head as a gradient bottleneck. With g = softmax(z) − e_y the loss's
  gradient in logit space, the share of ‖g‖² in the head's column space (what
  back-propagation through Wᵀ keeps), pooled and as a per-token mean, beside the chance level
  rank(W)/V; and on one batch, the share of ‖G‖²_F kept by G's best rank-r and rank-2r
  approximations.
- ``frequency``: the head's dominant components against token frequency: |Spearman ρ|
  between each of the top left singular vectors' loadings and log(1 + count) of each token in
  the training sample, and the share of ‖W‖²_F in the top component.
- ``representation``: the head input's own spectrum. RankMe, exp of the entropy of the
  normalised singular values of the states (Garrido et al. 2023), and α-ReQ, the power-law
  decay of their covariance's eigenvalues (Agrawal et al. 2022), from a d × d float64 Gram
  matrix streamed as anisotropy is.

Each is an accumulator fed by ``metrics.forward_metrics`` batch by batch: the head's inputs
(all positions, and those that predict a token), the targets and the log-probabilities the
pass computes anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# The parts of a measurement beyond the paper's, each needing the forward pass.
PARTS = ("truncation", "gradient", "frequency", "representation")
# Top components of the head whose loadings are set against token frequency.
FREQUENCY_COMPONENTS = 5
# Tokens of the first batch whose gradient matrix G is decomposed: 4r (twice the rank-2r
# approximation's, so that neither keeps G whole), at most this many (heads up to r = 2,048;
# above, fewer than 4r).
GRADIENT_BATCH_TOKENS = 8192
# Tokens whose logits are held at once by the truncation's and the gradient's accumulators.
CHUNK_TOKENS = 4096


@dataclass
class HeadBasis:
    """The head's thin SVD W = U diag(sigma) Vt (U: V x r, Vt: r x d, r = min(V, d)), U and
    Vt on the measuring device in float32, sigma in float64; its bias, if any. Directions
    whose sigma is below ``NUMERICAL_ZERO`` of the largest have no column in U (zeros): they
    count as outside the head's column space, and ``rank`` leaves them out."""

    u: torch.Tensor
    sigma: np.ndarray
    vt: torch.Tensor
    bias: torch.Tensor | None

    @property
    def rank(self) -> int:
        return int((self.sigma > NUMERICAL_ZERO * self.sigma[0]).sum())


# A singular value below this share of the largest is numerically zero (the Gram matrix's
# eigenvalues carry an absolute error of about eps * sigma_max^2).
NUMERICAL_ZERO = 1e-6


def head_basis(head: torch.nn.Module, device, gram: np.ndarray | None = None) -> HeadBasis:
    """The head's SVD in float64, from the eigenvectors of its d x d Gram matrix W^T W
    (``gram``, where the spectrum already computed it; ``metrics.head_gram``): Vt, sigma, and
    U = W V / sigma, computed on ``device``. A head wider than tall (V < d) takes LAPACK's SVD
    of W itself."""
    from saturation.metrics import head_gram

    w = head.weight.detach()
    if w.shape[0] < w.shape[1]:
        u, s, vt = torch.linalg.svd(w.to("cpu", torch.float64), full_matrices=False)
        sigma, right = s.numpy().copy(), vt.T.numpy()
        u[:, torch.from_numpy(sigma <= NUMERICAL_ZERO * sigma[0])] = 0
        u = u.to(device)
    else:
        lam, right = np.linalg.eigh(head_gram(w) if gram is None else gram)
        lam, right = np.clip(lam[::-1], 0, None), np.ascontiguousarray(right[:, ::-1])
        sigma = np.sqrt(lam)
        kept = sigma > NUMERICAL_ZERO * sigma[0]
        scale = np.where(kept, 1 / np.where(kept, sigma, 1), 0.0)
        v = torch.from_numpy(right).to(device)
        u = (w.to(device, torch.float64) @ v) * torch.from_numpy(scale).to(device)
    bias = getattr(head, "bias", None)
    return HeadBasis(
        u=u.to(device, torch.float32),
        sigma=sigma,
        vt=torch.from_numpy(right.T.copy()).to(device, torch.float32),
        bias=None if bias is None else bias.detach().to(device, torch.float32),
    )


def truncation_ranks(rank: int) -> list[int]:
    """The ranks k a head is truncated to: the powers of two below its rank, and its rank."""
    return [2**i for i in range(rank.bit_length()) if 2**i < rank] + [rank]


class TruncationAccumulator:
    """The summed loss of the head truncated to each rank of ``truncation_ranks``, on the
    tokens the pass predicts: logits built up rank by rank, z_k = z_{k'} + U[:, k':k]
    (sigma * Vt h)[k':k], so all ranks cost one product with U."""

    def __init__(self, basis: HeadBasis):
        self.basis = basis
        self.ranks = truncation_ranks(basis.rank)
        self.nll = np.zeros(len(self.ranks))
        self.n = 0

    def update(self, h: torch.Tensor, targets: torch.Tensor) -> None:
        b = self.basis
        sigma = torch.as_tensor(b.sigma, dtype=torch.float32, device=h.device)
        for start in range(0, len(targets), CHUNK_TOKENS):
            x = h[start : start + CHUNK_TOKENS].float()
            t = targets[start : start + CHUNK_TOKENS]
            coef = (x @ b.vt.T) * sigma  # (n, r): the state in the head's right basis
            z = torch.zeros(len(t), b.u.shape[0], device=h.device)
            if b.bias is not None:
                z += b.bias
            done = 0
            for i, k in enumerate(self.ranks):
                z.addmm_(coef[:, done:k], b.u[:, done:k].T)
                done = k
                nll = torch.logsumexp(z, dim=1) - z.gather(1, t[:, None])[:, 0]
                self.nll[i] += float(nll.double().sum())
            self.n += len(t)

    def rows(self) -> list[dict]:
        """Per rank k: the truncated head's loss, its gap to the full head's (the last
        rank), T(k), the W-error T(k)/||W||_F and the ratio gap / T(k) (null at full rank)."""
        from saturation.ngrams import tail_norms

        loss = self.nll / self.n
        tails = tail_norms(self.basis.sigma)
        norm = tails[0]
        rows = []
        for k, value in zip(self.ranks, loss, strict=True):
            gap = float(value - loss[-1])
            tail = float(tails[k])
            rows.append(
                {
                    "d": k,
                    "head_rank": self.basis.rank,
                    "loss": float(value),
                    "gap": gap,
                    "tail_norm": tail,
                    "w_error": tail / norm if norm > 0 else math.nan,
                    "gap_over_tail": gap / tail if tail > 0 else None,
                }
            )
        return rows


def logit_gradient(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """g = softmax(z) - e_y of each token, in float32, from its log-probabilities. Its
    target's entry p_y - 1 is minus the sum of the other entries: for a confident token p_y
    - 1 cancels (log p_y itself is then mostly float32 rounding), while the other p_i are each
    exact to their own precision."""
    g = logp.float().exp()
    rows = torch.arange(len(targets), device=g.device)
    g[rows, targets] = 0.0
    g[rows, targets] = -g.sum(dim=1)
    return g


class GradientAccumulator:
    """The logit-space gradient g = p - e_y against the head's column space (U's span):
    ||U^T g||^2 / ||g||^2 pooled over tokens and averaged per token (over the tokens with a
    gradient: one predicted with certainty in float32 has none); and for the first
    min(4r, ``GRADIENT_BATCH_TOKENS``) tokens, the gradient matrix G (tokens x V), whose best
    rank-r and rank-2r approximations keep the sum of its top squared singular values."""

    def __init__(self, basis: HeadBasis):
        self.basis = basis
        self.kept = self.total = self.mean_sum = 0.0
        self.n = 0
        self.batch: dict | None = None

    def update(self, logp: torch.Tensor, targets: torch.Tensor) -> None:
        u = self.basis.u
        if self.batch is None:
            cap = min(GRADIENT_BATCH_TOKENS, 4 * self.basis.rank)
            self.batch = self.batch_shares(logit_gradient(logp[:cap], targets[:cap]))
        for start in range(0, len(targets), CHUNK_TOKENS):
            g = logit_gradient(
                logp[start : start + CHUNK_TOKENS], targets[start : start + CHUNK_TOKENS]
            )
            g2 = (g * g).sum(1).double()
            c = g @ u  # U^T g, (n, r)
            kept = (c * c).sum(1).double()
            self.kept += float(kept.sum())
            self.total += float(g2.sum())
            moved = g2 > 0  # a token predicted with certainty has no gradient to share
            self.mean_sum += float((kept[moved] / g2[moved]).sum())
            self.n += int(moved.sum())

    def batch_shares(self, g: torch.Tensor) -> dict:
        """G (tokens x V) of one batch: the shares of ||G||_F^2 in its top r and 2r singular
        values, from the eigenvalues of G G^T in float64 (both 1 where the batch has at most
        r tokens)."""
        # the smaller Gram (tokens or vocabulary); float32 products, shares exact to ~1e-6
        gram = (g @ g.T if len(g) <= g.shape[1] else g.T @ g).double()
        eig = torch.linalg.eigvalsh(gram).clamp(min=0).flip(0).cpu().numpy()
        total = eig.sum()
        r = self.basis.rank
        return {
            "gradient_batch_tokens": float(len(g)),
            "gradient_batch_share_rank_r": float(eig[:r].sum() / total),
            "gradient_batch_share_rank_2r": float(eig[: 2 * r].sum() / total),
        }

    def values(self) -> dict[str, float]:
        return {
            "gradient_share_pooled": self.kept / self.total,
            "gradient_share_mean": self.mean_sum / self.n,
            "gradient_share_chance": self.basis.rank / self.basis.u.shape[0],
            **(self.batch or {}),
        }


def frequency_metrics(basis: HeadBasis, counts: np.ndarray) -> dict[str, float]:
    """|Spearman rho| between the loadings over the vocabulary of each of the top
    ``FREQUENCY_COMPONENTS`` left singular vectors and log(1 + count) of each token in the
    training sample (a singular vector's sign is arbitrary: the magnitude is what it says);
    and sigma_1^2 / ||W||_F^2."""
    from scipy.stats import spearmanr

    vocab = basis.u.shape[0]
    if len(counts) < vocab:  # ids the sample never holds (the head's padded rows)
        counts = np.concatenate([counts, np.zeros(vocab - len(counts), dtype=counts.dtype)])
    log_freq = np.log1p(counts[:vocab].astype(np.float64))
    u = basis.u.cpu().double().numpy()
    out = {}
    for i in range(min(FREQUENCY_COMPONENTS, basis.rank)):
        rho = spearmanr(u[:, i], log_freq).statistic
        out[f"frequency_rho_{i + 1}"] = float(abs(rho))
    sq = basis.sigma**2
    out["top_component_share"] = float(sq[0] / sq.sum())
    return out


class RepresentationAccumulator:
    """The head input's Gram matrix H^T H, sum and count, in float64: RankMe from its
    singular values (sqrt of the Gram's eigenvalues), alpha-ReQ from the covariance's."""

    def __init__(self, dim: int, device="cpu"):
        self.gram = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.n = 0

    def update(self, h: torch.Tensor) -> None:
        h = h.reshape(-1, h.shape[-1]).double()
        self.gram += h.T @ h
        self.sum += h.sum(0)
        self.n += len(h)

    def values(self) -> dict[str, float]:
        gram = self.gram.cpu().numpy()
        sigma = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None))[::-1]
        mean = self.sum.cpu().numpy() / self.n
        cov = (gram - self.n * np.outer(mean, mean)) / (self.n - 1)
        eig = np.clip(np.linalg.eigvalsh(cov), 0, None)[::-1]
        return {"rankme": rankme(sigma), "alpha_req": alpha_req(eig)}


# RankMe's epsilon (Garrido et al. 2023): added to each normalised singular value.
RANKME_EPS = 1e-7


def rankme(sigma: np.ndarray) -> float:
    """exp(-sum p_k log p_k), p_k = sigma_k / sum(sigma) + eps."""
    p = np.asarray(sigma, dtype=np.float64) / np.sum(sigma) + RANKME_EPS
    return float(np.exp(-np.sum(p * np.log(p))))


# Eigenvalues below this share of the largest are numerically zero, left out of the fit.
ALPHA_REQ_FLOOR = 1e-10


def alpha_req(eig: np.ndarray) -> float:
    """alpha of lambda_i ~ i^-alpha: minus the least-squares slope of log lambda_i against
    log i over the eigenvalues (descending) above ALPHA_REQ_FLOOR of the largest."""
    eig = np.asarray(eig, dtype=np.float64)
    keep = eig > ALPHA_REQ_FLOOR * eig[0]
    i = np.arange(1, len(eig) + 1)[keep]
    if len(i) < 2:
        return math.nan
    slope = np.polyfit(np.log(i), np.log(eig[keep]), 1)[0]
    return float(-slope)


class BeyondPaper:
    """The accumulators of the ``parts`` (of ``PARTS``) a measurement asks for, fed batch by
    batch by ``metrics.forward_metrics``; ``counts``: each token id's count in the training
    sample (``frequency``); ``gram``: the head's W^T W where the spectrum computed it."""

    def __init__(
        self,
        parts,
        head: torch.nn.Module,
        device,
        counts: np.ndarray | None = None,
        gram: np.ndarray | None = None,
    ):
        self.parts = [p for p in PARTS if p in parts]
        needs_basis = {"truncation", "gradient", "frequency"} & set(self.parts)
        self.basis = head_basis(head, device, gram) if needs_basis else None
        self.truncation = TruncationAccumulator(self.basis) if "truncation" in parts else None
        self.gradient = GradientAccumulator(self.basis) if "gradient" in parts else None
        self.representation = (
            RepresentationAccumulator(head.weight.shape[1], device)
            if "representation" in parts
            else None
        )
        if "frequency" in parts and counts is None:
            raise ValueError("metrics.parts frequency needs the training sample's token counts")
        self.counts = counts

    def update(self, states, h_pred, targets, logp) -> None:
        """One batch: the head's inputs at every position (``states``) and at those that
        predict a token (``h_pred``), their ``targets`` and log-probabilities ``logp``."""
        if self.representation is not None:
            self.representation.update(states)
        if self.truncation is not None:
            self.truncation.update(h_pred, targets)
        if self.gradient is not None:
            self.gradient.update(logp, targets)

    def metrics(self) -> dict[str, float]:
        """The scalar metrics (the checkpoint's metric rows)."""
        out = {}
        if self.gradient is not None:
            out |= self.gradient.values()
        if "frequency" in self.parts:
            out |= frequency_metrics(self.basis, self.counts)
        if self.representation is not None:
            out |= self.representation.values()
        return out

    def truncation_rows(self) -> list[dict]:
        return self.truncation.rows() if self.truncation is not None else []
