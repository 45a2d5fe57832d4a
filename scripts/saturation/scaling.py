"""Saturation analysis: best and final checkpoints, and the scaling-law fit
L(N, T) = E + A / N^alpha + B / T^beta (Chinchilla's form; the paper fixes E, B, beta to
Chinchilla's values and fits A, alpha on the models that do not saturate)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.optimize import least_squares

from saturation.io import write_parquet

log = logging.getLogger(__name__)

PARAMETERS = ("E", "A", "alpha", "B", "beta")


def scaling_law(n, t, E, A, alpha, B, beta):
    return E + A / np.power(n, alpha) + B / np.power(t, beta)


def fit_scaling_law(
    n: np.ndarray, t: np.ndarray, loss: np.ndarray, fixed: dict, initial: dict
) -> dict:
    """Non-linear least squares on the free parameters; the fixed ones are held.

    Fitted in log-space for A and B (so they stay positive and comparably scaled) with
    exponents bounded to (0, 3).
    """
    free = [p for p in PARAMETERS if p not in fixed]
    missing = [p for p in free if p not in initial]
    if missing:
        raise ValueError(f"no initial value for the free scaling-law parameters {missing}")
    if len(loss) < len(free):
        raise ValueError(f"{len(loss)} points cannot determine {len(free)} free parameters {free}")
    n, t, loss = (np.asarray(x, dtype=np.float64) for x in (n, t, loss))
    log_scale = {"A", "B"}

    def unpack(x):
        values = dict(fixed)
        for p, v in zip(free, x, strict=True):
            values[p] = np.exp(v) if p in log_scale else v
        return values

    def residuals(x):
        return scaling_law(n, t, **unpack(x)) - loss

    x0 = [np.log(initial[p]) if p in log_scale else initial[p] for p in free]
    lower = [-np.inf if p in log_scale or p == "E" else 1e-6 for p in free]
    upper = [np.inf if p in log_scale or p == "E" else 3.0 for p in free]
    result = least_squares(
        residuals,
        x0,
        bounds=(lower, upper),
        x_scale="jac",
        xtol=1e-14,
        ftol=1e-14,
        gtol=1e-14,
        max_nfev=20000,
    )
    values = unpack(result.x)
    res = residuals(result.x)
    return {
        **{p: float(values[p]) for p in PARAMETERS},
        "free": free,
        "converged": bool(result.success),
        "rmse": float(np.sqrt(np.mean(res**2))),
        "max_abs_residual": float(np.abs(res).max()),
        "residuals": res,
    }


SATURATION_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("n_params", pa.int64()),
        ("in_fit", pa.bool_()),
        ("role", pa.string()),
        ("step", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("loss", pa.float64()),
        ("extrapolated_loss", pa.float64()),
        ("relative_gap", pa.float64()),
    ]
)
FIT_SCHEMA = pa.schema(
    [
        ("parameter", pa.string()),
        ("value", pa.float64()),
        ("fitted", pa.bool_()),
    ]
)
POINTS_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("n_params", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("loss", pa.float64()),
        ("predicted_loss", pa.float64()),
        ("residual", pa.float64()),
    ]
)


def best_and_final(loss: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """One model's best (minimum eval loss, earliest step on ties) and final loss rows."""
    g = loss.sort_values("step", kind="stable")
    return g.loc[g.value.idxmin()], g.iloc[-1]


def saturation_analysis(
    metrics_path: str,
    fit_models: list[str],
    parameters: str,
    min_step: int,
    fixed: dict,
    initial: dict,
    out_saturation: str,
    out_fit: str,
    out_points: str,
    entropy_rate: float | None = None,
) -> dict:
    from saturation.tables import trusted_metrics

    metrics = trusted_metrics(pd.read_parquet(metrics_path))
    loss = metrics[metrics.metric == "loss"].copy()
    n_col = "n_params_no_embedding" if parameters == "non_embedding" else "n_params"
    loss["N"] = loss[n_col].astype(float)
    fixed = {k: (entropy_rate if v == "entropy_rate" else v) for k, v in fixed.items()}
    if any(v is None for v in fixed.values()):
        raise ValueError("scaling.fixed.E: 'entropy_rate' needs the synthetic corpus")
    unknown = sorted(set(fit_models) - set(loss.model))
    if unknown:
        raise ValueError(f"scaling.models: {unknown} were not measured")
    points = loss[loss.model.isin(fit_models) & (loss.step >= max(min_step, 1))]
    fit = fit_scaling_law(points.N, points.tokens_seen, points.value, fixed, initial)
    log.info("fit: %s", {k: fit[k] for k in PARAMETERS})
    law = {p: fit[p] for p in PARAMETERS}

    rows = []
    for model, g in loss.groupby("model", sort=True):
        best, final = best_and_final(g)
        for role, r in (("best", best), ("final", final)):
            pred = scaling_law(r.N, r.tokens_seen, **law) if r.tokens_seen > 0 else np.nan
            rows.append(
                {
                    "model": model,
                    "n_params": int(r[n_col]),
                    "in_fit": model in fit_models,
                    "role": role,
                    "step": int(r.step),
                    "tokens_seen": int(r.tokens_seen),
                    "loss": float(r.value),
                    "extrapolated_loss": float(pred),
                    "relative_gap": float(r.value / pred - 1),
                }
            )
    sat = pd.DataFrame(rows).sort_values(["n_params", "model", "role"])
    write_parquet(
        pa.Table.from_pandas(sat, schema=SATURATION_SCHEMA, preserve_index=False), out_saturation
    )
    fit_rows = [{"parameter": p, "value": fit[p], "fitted": p in fit["free"]} for p in PARAMETERS]
    fit_rows += [
        {"parameter": "rmse", "value": fit["rmse"], "fitted": False},
        {"parameter": "max_abs_residual", "value": fit["max_abs_residual"], "fitted": False},
        {"parameter": "n_points", "value": float(len(points)), "fitted": False},
    ]
    write_parquet(pa.Table.from_pylist(fit_rows, schema=FIT_SCHEMA), out_fit)
    pts = pd.DataFrame(
        {
            "model": points.model,
            "step": points.step,
            "n_params": points[n_col],
            "tokens_seen": points.tokens_seen,
            "loss": points.value,
            "predicted_loss": points.value + fit["residuals"],
            "residual": fit["residuals"],
        }
    )
    write_parquet(pa.Table.from_pandas(pts, schema=POINTS_SCHEMA, preserve_index=False), out_points)
    return fit


def run_saturation(inputs, scaling: dict, outputs) -> None:
    """Snakemake-facing wrapper."""
    language = dict(inputs.items()).get("language")
    entropy_rate = None
    if language:
        from saturation.io import read_json

        entropy_rate = read_json(language)["entropy_rate"]
    saturation_analysis(
        inputs["metrics"],
        fit_models=scaling["models"],
        parameters=scaling["parameters"],
        min_step=scaling["min_step"],
        fixed=scaling["fixed"],
        initial=scaling["initial"],
        out_saturation=outputs["saturation"],
        out_fit=outputs["fit"],
        out_points=outputs["points"],
        entropy_rate=entropy_rate,
    )
