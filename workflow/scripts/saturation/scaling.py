"""Saturation analysis: best and final checkpoints, and the scaling-law fit
L(N, T) = E + A / N^alpha + B / T^beta (Chinchilla's form; the paper fixes E, B, beta to
Chinchilla's values and fits A, alpha on the models that do not saturate)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from saturation.io import write_parquet
from saturation.tables import (
    SATURATION_BY_SIZE_SCHEMA,
    SATURATION_SCHEMA,
    SCALING_FIT_SCHEMA,
    SCALING_POINTS_SCHEMA,
)

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
    # Imported here: the figures need only scaling_law, and scipy.optimize costs every figure
    # job half a CPU second.
    from scipy.optimize import least_squares

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


N_COLUMNS = {"total": "n_params", "non_embedding": "n_params_no_embedding"}

SUMMARY = (
    "rmse",
    "max_abs_residual",
    "n_points",
    "n_below_fit",
    "mean_relative_gap_best",
    "mean_relative_gap_final",
    "collapsed",
)
SIZE_PARAMETERS = ("E", "A", "alpha")  # what only differences between sizes determine


def sizes_needed(fixed: dict) -> int:
    """The distinct model sizes a fit needs: one more than its free size parameters (E, A,
    alpha not held), so that the law is tested by a size, not only solved by them."""
    return 1 + sum(p not in fixed for p in SIZE_PARAMETERS)


def fit_plan(scaling: dict) -> str | None:
    """Why no fit is made, as far as the config tells (None: a fit is attempted)."""
    models = sorted(set(scaling.get("models") or []))
    if not models:
        return "no fit: scaling.models is not set"
    need = sizes_needed(scaling["fixed"])
    if len(models) < need:
        free = [p for p in SIZE_PARAMETERS if p not in scaling["fixed"]]
        return (
            f"no fit: scaling.models names {len(models)} model(s) and the law's free size "
            f"parameters {free} need {need} sizes (hold some in scaling.fixed, or add models)"
        )
    return None


def floor_of(points: pd.DataFrame, fixed: dict) -> np.ndarray | None:
    """The loss the law's held parameters alone predict at each point (E + B / T^beta, the
    size term being positive), where E, B and beta are all held; else None."""
    if not all(isinstance(fixed.get(p), (int, float)) for p in ("E", "B", "beta")):
        return None
    return held_part(points, fixed)


def fittable_points(points: pd.DataFrame, n_col: str, fixed: dict) -> tuple[pd.DataFrame, list]:
    """The points a fit can use: above the floor its held parameters set (a loss below
    E + B / T^beta leaves the size term nothing, or less than nothing, to explain); and
    notes on what was left out and whether enough sizes remain."""
    notes = []
    floor = floor_of(points, fixed)
    if floor is not None:
        above = points.loss_whole.to_numpy() > floor
        if not above.all():
            out = points[~above]
            notes.append(
                f"{len(out)} of {len(points)} points left out of the fit: their loss is below "
                "the floor the held parameters set (E + B / T^beta), e.g. "
                f"{out.model.iloc[0]} step {int(out.step.iloc[0])}: "
                f"{out.loss_whole.iloc[0]:.3f} < {floor[~above][0]:.3f} nats"
            )
            log.warning("scaling: %s", notes[-1])
        points = points[above]
    need, sizes = sizes_needed(fixed), points[n_col].nunique()
    if sizes < need:
        notes.append(
            f"fit skipped: {sizes} model size(s) with points above the floor; the free size "
            f"parameters {[p for p in SIZE_PARAMETERS if p not in fixed]} need {need}"
        )
        log.warning("scaling: %s", notes[-1])
        points = points.iloc[:0]
    return points, notes


def held_part(points: pd.DataFrame, fixed: dict) -> np.ndarray:
    """What the held parameters alone add to each point's loss (E; B / T^beta where both are
    held)."""
    part = np.full(len(points), float(fixed.get("E", 0.0)))
    if "B" in fixed and "beta" in fixed:
        t = points.tokens_seen.to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore"):
            part += fixed["B"] / np.power(t, fixed["beta"])
    return part


def collapse_note(fit: dict, points: pd.DataFrame, n_col: str, fixed: dict) -> str | None:
    """Why a fitted law has collapsed, or None: its size term vanishing at the smallest
    fitted model, or an RMSE no better than a constant's (the spread of what the fitted
    parameters had to explain, the losses less the held parameters' part)."""
    n_min = float(points[n_col].min())
    size_term = fit["A"] / n_min ** fit["alpha"]
    spread = float(np.std(points.loss_whole.to_numpy() - held_part(points, fixed)))
    if size_term < 1e-6:
        return (
            f"fit collapsed: the size term A / N^alpha is {size_term:.2g} nats at N = "
            f"{n_min:.3g} (A = {fit['A']:.3g}): the fitted models' losses do not fall with N"
        )
    if len(points) > 2 and spread > 0 and fit["rmse"] >= 0.99 * spread:
        return (
            f"fit collapsed: RMSE {fit['rmse']:.3g} nats is no better than a constant's "
            f"({spread:.3g}): these points do not follow the law"
        )
    return None


def fit_points(
    losses: pd.DataFrame,
    fit_models: list[str],
    min_step: int,
    max_step: int | None,
    min_width: int | None,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The checkpoints the law is fitted on: the fit models' whole-sample losses at steps
    in [min_step, max_step] (duplicates are already out), without the models narrower than
    ``min_width`` (the synthetic language's softmax rank R + 1: such a model is bottlenecked,
    and the law describes models that are not). Returns the points, the models kept, and
    notes on what was left out."""
    notes = []
    kept = list(fit_models)
    if min_width is not None:
        width = losses.groupby("model").hidden_size.first()
        narrow = [m for m in kept if width.get(m, min_width) < min_width]
        if narrow:
            notes.append(
                f"{narrow} left out of the fit: hidden size below the language's softmax rank "
                f"R + 1 = {min_width}"
            )
            log.warning("scaling.models: %s", notes[-1])
        kept = [m for m in kept if m not in narrow]
    upper = np.inf if max_step is None else max_step
    points = losses[
        losses.model.isin(kept) & (losses.step >= max(min_step, 1)) & (losses.step <= upper)
    ]
    return points, kept, notes


def skipped_fit(free: list[str], notes: list[str], points: pd.DataFrame) -> dict:
    """A fit not made: no law, no points fitted (``points``' columns), and why."""
    return {"law": None, "free": free, "note": "; ".join(notes), "rmse": np.nan,
            "max_abs_residual": np.nan, "collapsed": False, "points": points.iloc[:0]}  # fmt: skip


def run_fit(points: pd.DataFrame, n_col: str, fixed: dict, initial: dict) -> dict:
    """The law fitted on ``points`` with N from ``n_col``; a fit without enough sizes above
    the floor (:func:`fittable_points`) or with fewer points than free parameters is
    skipped, with a note, and has no law; a collapsed one is flagged."""
    free = [p for p in PARAMETERS if p not in fixed]
    points, notes = fittable_points(points, n_col, fixed)
    if points.empty:
        return skipped_fit(free, notes, points)
    if len(points) < len(free):
        note = (
            f"fit skipped: {len(points)} points cannot determine {len(free)} free parameters "
            f"{free} (add models or steps to scaling.models / min_step / max_step)"
        )
        log.warning("%s", note)
        return skipped_fit(free, [*notes, note], points)
    fit = fit_scaling_law(
        points[n_col].astype(float), points.tokens_seen, points.loss_whole, fixed, initial
    )
    notes += [] if fit["converged"] else ["the least-squares fit did not converge"]
    for p in ("alpha", "beta"):
        if p in free and not 1e-5 < fit[p] < 3.0 - 1e-6:
            notes.append(
                f"{p} ended at its bound ({fit[p]:.3g}): these points do not determine it; "
                "hold it in scaling.fixed or fit on more models or steps"
            )
            log.warning("%s", notes[-1])
    collapsed = collapse_note(fit, points, n_col, fixed)
    if collapsed:
        notes.append(collapsed)
        log.warning("scaling: %s", collapsed)
    return {**fit, "law": {p: fit[p] for p in PARAMETERS}, "note": "; ".join(notes) or None,
            "collapsed": collapsed is not None, "points": points}  # fmt: skip


def gap_rows(losses, law, n_col, fit_models) -> list[dict]:
    """Best and final checkpoint of every model against the law at each one's own T."""
    from saturation.selection import best_and_final

    min_fit_n = losses[losses.model.isin(fit_models)][n_col].min()
    rows = []
    for model, g in losses.groupby("model", sort=True):
        for role, r in zip(("best", "final"), best_and_final(g), strict=True):
            pred = np.nan
            if law is not None and r.tokens_seen > 0:
                pred = float(scaling_law(float(r[n_col]), float(r.tokens_seen), **law))
            rows.append(
                {
                    "model": model,
                    "n_params": int(r[n_col]),
                    "in_fit": model in fit_models,
                    "below_fit": bool(r[n_col] < min_fit_n),
                    "role": role,
                    "step": int(r.step),
                    "tokens_seen": int(r.tokens_seen),
                    "loss": float(r.loss_report),
                    "loss_whole": float(r.loss_whole),
                    "extrapolated_loss": pred,
                    "relative_gap": float(r.loss_report) / pred - 1,
                    "relative_gap_whole": float(r.loss_whole) / pred - 1,
                }
            )
    return rows


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
    max_step: int | None = None,
    min_width: int | None = None,
    documents_path: str | None = None,
    level: float = 0.01,
    resamples: int = 2000,
    seed: int = 0,
    out_by_size: str | None = None,
    reference: dict | None = None,
    plan_note: str | None = None,
) -> dict:
    """The law fitted with N counted both ways (total, the count Chinchilla's fixed E, B,
    beta come from; and non-embedding), and every model's best and final checkpoint against
    it. ``parameters`` names the count the figure and the log lead with; ``plan_note``: why
    no fit is made (:func:`fit_plan`), the analysis without it. Returns the fits by count."""
    from saturation.aggregation import trusted_metrics
    from saturation.selection import checkpoint_losses

    losses = checkpoint_losses(trusted_metrics(pd.read_parquet(metrics_path)))
    fixed = {k: (entropy_rate if v == "entropy_rate" else v) for k, v in fixed.items()}
    if any(v is None for v in fixed.values()):
        raise ValueError("scaling.fixed.E: 'entropy_rate' needs the synthetic corpus")
    unknown = sorted(set(fit_models) - set(losses.model))
    if unknown:
        raise ValueError(f"scaling.models: {unknown} were not measured")
    points, kept, notes = fit_points(losses, fit_models, min_step, max_step, min_width)
    if plan_note:
        log.warning("scaling: %s", plan_note)

    sat, fit_rows, pts, fits = [], [], [], {}
    for count, n_col in N_COLUMNS.items():
        selected = count == parameters
        fit = fits[count] = (
            skipped_fit([p for p in PARAMETERS if p not in fixed], [plan_note], points)
            if plan_note
            else run_fit(points, n_col, fixed, initial)
        )
        rows = gap_rows(losses, fit["law"], n_col, kept)
        sat += [{"parameters": count, "selected": selected, **r} for r in rows]
        fit["summary"] = fit_summary(fit, rows)
        note = "; ".join(n for n in [fit["note"], *notes] if n) or None
        fit_rows += fit_table_rows(count, selected, fit, fixed, note, reference or {})
        pts.append(points_table(count, fit, n_col))
        log.info(
            "N %s: fit %s; models below the fit: mean gap best %+.2f%%, final %+.2f%%",
            count,
            fit["law"],
            100 * fit["summary"]["mean_relative_gap_best"],
            100 * fit["summary"]["mean_relative_gap_final"],
        )
    tests = (
        {}
        if documents_path is None
        else paired_tests(losses, documents_path, level, resamples, seed)
    )
    sat = saturation_table(pd.DataFrame(sat), tests)
    write_frame(sat, SATURATION_SCHEMA, out_saturation)
    if out_by_size is not None:
        from saturation.significance import by_size

        write_frame(by_size(sat), SATURATION_BY_SIZE_SCHEMA, out_by_size)
    write_parquet(pa.Table.from_pylist(fit_rows, schema=SCALING_FIT_SCHEMA), out_fit)
    write_frame(pd.concat(pts), SCALING_POINTS_SCHEMA, out_points)
    return fits


def write_frame(frame: pd.DataFrame, schema: pa.Schema, path: str) -> None:
    write_parquet(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def fit_summary(fit: dict, rows: list[dict]) -> dict:
    """A fit's quality and the models below it: RMSE, max residual, points, how many models
    are smaller than every fitted one and their mean relative gap at best and final."""
    below = pd.DataFrame([r for r in rows if r["below_fit"]])
    summary = {
        "rmse": fit["rmse"],
        "max_abs_residual": fit["max_abs_residual"],
        "n_points": float(len(fit["points"])),
        "n_below_fit": float(below.model.nunique() if len(below) else 0),
    }
    for role in ("best", "final"):
        gaps = below[below.role == role].relative_gap if len(below) else pd.Series([])
        summary[f"mean_relative_gap_{role}"] = float(gaps.mean()) if len(gaps) else np.nan
    summary["collapsed"] = float(fit["collapsed"])
    return summary


def fit_table_rows(
    count: str, selected: bool, fit: dict, fixed: dict, note: str | None, reference: dict
) -> list[dict]:
    """The rows of scaling_fit.parquet for one N count: each parameter of the law (fitted or
    held, beside its published value), then the fit's summary."""
    law = fit["law"] or {p: fixed.get(p, np.nan) for p in PARAMETERS}
    head = {"parameters": count, "selected": selected}
    rows = [
        {**head, "parameter": p, "value": float(law[p]),
         "fitted": p in fit["free"] and fit["law"] is not None, "note": note,
         "reference": reference.get(p)}
        for p in PARAMETERS
    ]  # fmt: skip
    rows += [
        {**head, "parameter": k, "value": float(v), "fitted": False, "note": note,
         "reference": None}
        for k, v in fit["summary"].items()
    ]  # fmt: skip
    return rows


def points_table(count: str, fit: dict, n_col: str) -> pd.DataFrame:
    """The points one N count's law was fitted on, with its predictions and residuals."""
    fitted = fit["points"]
    residual = fit.get("residuals", np.full(len(fitted), np.nan))
    return pd.DataFrame(
        {
            "parameters": count,
            "model": fitted.model,
            "step": fitted.step,
            "n_params": fitted[n_col],
            "tokens_seen": fitted.tokens_seen,
            "loss": fitted.loss_whole,
            "predicted_loss": fitted.loss_whole + residual,
            "residual": residual,
        }
    )


def paired_tests(losses, documents_path: str, level: float, resamples: int, seed) -> dict:
    """Each model's final - best on the report half's documents, paired
    (``significance.saturation_tests``), logged."""
    from saturation.selection import best_and_final
    from saturation.significance import saturation_tests

    choices = {
        model: tuple(int(r.step) for r in best_and_final(g))
        for model, g in losses.groupby("model", sort=True)
    }
    tests = saturation_tests(pd.read_parquet(documents_path), choices, level, resamples, seed)
    for model, t in tests.items():
        log.info(
            "%s: final - best %+.4f nats (SE %.4f, p %.3g)%s",
            model,
            t["final_minus_best"],
            t["final_minus_best_se"],
            t["final_minus_best_p"],
            ": saturates" if t["saturated"] else "",
        )
    return tests


def saturation_table(sat: pd.DataFrame, tests: dict) -> pd.DataFrame:
    """Every model's best and final rows of each N count, in order, with its paired test."""
    from saturation.significance import TEST_COLUMNS

    sat = sat.sort_values(["parameters", "n_params", "model", "role"])
    for col in TEST_COLUMNS:
        sat[col] = [tests.get(m, {}).get(col) for m in sat.model]
    return sat


def scaling_fit(inputs, scaling: dict, outputs, seed: int = 0) -> None:
    """The saturation analysis and the scaling-law fit from a rule's inputs and outputs
    (Snakemake-facing)."""
    language = dict(inputs.items()).get("language")
    entropy_rate = min_width = None
    if language:
        from saturation.io import read_json

        facts = read_json(language)
        entropy_rate, min_width = facts["entropy_rate"], facts["softmax_rank_bound"]
    saturation_analysis(
        inputs["checkpoint_metrics"],
        fit_models=scaling["models"] or [],
        parameters=scaling["parameters"],
        min_step=scaling["min_step"],
        max_step=scaling.get("max_step"),
        fixed=scaling["fixed"],
        initial=scaling["initial"],
        out_saturation=outputs["saturation"],
        out_fit=outputs["scaling_fit"],
        out_points=outputs["scaling_points"],
        entropy_rate=entropy_rate,
        min_width=min_width,
        documents_path=inputs["document_losses"],
        level=scaling["saturation_level"],
        resamples=scaling["bootstrap_resamples"],
        seed=seed,
        out_by_size=outputs["saturation_by_size"],
        reference=scaling.get("reference"),
        plan_note=fit_plan(scaling),
    )
