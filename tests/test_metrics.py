"""Every metric against an independent naive reference, and degenerate inputs."""

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats

from conftest import tiny_gpt_neox
from saturation.metrics import (
    AnisotropyAccumulator,
    MetricError,
    anisotropy,
    chunk_documents,
    forward_metrics,
    parameter_counts,
    singular_values,
    spectrum_metrics,
)

rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def seeded():
    """Each test draws from the same seed, whichever tests ran before it (xdist splits and
    -k selections alike)."""
    global rng
    rng = np.random.default_rng(0)


def naive_anisotropy(h):
    u = h / np.linalg.norm(h, axis=1, keepdims=True)
    cos = u @ u.T
    n = len(h)
    return (cos.sum() - np.trace(cos)) / (n * (n - 1))


def test_anisotropy_equals_full_pairwise_cosine():
    h = rng.standard_normal((300, 16)) + 0.7  # a shared direction makes it non-trivial
    assert anisotropy(h) == pytest.approx(naive_anisotropy(h), abs=1e-12)
    acc = AnisotropyAccumulator(16)
    for chunk in np.array_split(h, 7):  # streamed in uneven batches
        acc.update(torch.from_numpy(chunk))
    assert acc.value == pytest.approx(naive_anisotropy(h), abs=1e-12)


def test_anisotropy_in_float32_input_accumulates_in_float64():
    h = (rng.standard_normal((2000, 8)) + 3.0).astype(np.float32)
    assert anisotropy(torch.from_numpy(h)) == pytest.approx(
        naive_anisotropy(h.astype(np.float64)), abs=1e-9
    )


def test_anisotropy_degenerate_inputs():
    same = np.tile(rng.standard_normal(8), (50, 1))
    assert anisotropy(same) == pytest.approx(1.0, abs=1e-12)
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert anisotropy(opposite) == pytest.approx(-1.0)
    with_zero = np.vstack([rng.standard_normal((10, 4)), np.zeros((3, 4))])
    acc = AnisotropyAccumulator(4)
    acc.update(torch.from_numpy(with_zero))
    assert acc.n == 10 and acc.n_zero == 3
    assert acc.value == pytest.approx(naive_anisotropy(with_zero[:10]), abs=1e-12)
    with pytest.raises(MetricError, match="at least 2"):
        anisotropy(np.ones((1, 4)))
    with pytest.raises(MetricError, match="NaN"):
        anisotropy(np.array([[np.nan, 1.0], [1.0, 1.0]]))


@pytest.mark.parametrize("shape", [(500, 24), (24, 500), (64, 64)])
def test_singular_values_equal_numpy_svd(shape):
    w = rng.standard_normal(shape)
    expected = np.linalg.svd(w, compute_uv=False)
    got = singular_values(w)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0)


def test_spectrum_metrics_equal_scipy():
    sigma = np.sort(rng.random(32) * 5)[::-1]
    m = spectrum_metrics(sigma)
    p = sigma / sigma.sum()
    uniform = np.full(32, 1 / 32)
    assert m["singular_entropy"] == pytest.approx(stats.entropy(p, uniform), abs=1e-12)
    assert m["singular_entropy"] == pytest.approx(math.log(32) - stats.entropy(p), abs=1e-12)
    assert m["effective_rank"] == pytest.approx(math.exp(stats.entropy(p)), abs=1e-12)
    w = rng.standard_normal((100, 32))
    s = np.linalg.svd(w, compute_uv=False)
    m = spectrum_metrics(singular_values(w))
    assert m["spectral_norm"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
    assert m["stable_rank"] == pytest.approx(np.linalg.norm(w, "fro") ** 2 / s[0] ** 2, rel=1e-10)
    assert m["frobenius_norm"] == pytest.approx(np.linalg.norm(w, "fro"), rel=1e-12)


def test_head_degenerate_cases():
    rank1 = np.outer(rng.standard_normal(200), rng.standard_normal(16))
    s = singular_values(rank1)
    assert s[0] == pytest.approx(np.linalg.norm(rank1, 2), rel=1e-12)
    assert np.all(s[1:] < 1e-6 * s[0])
    m = spectrum_metrics(s)
    assert m["singular_entropy"] == pytest.approx(math.log(16), abs=1e-5)  # one spike
    assert m["effective_rank"] == pytest.approx(1.0, abs=1e-5)
    assert m["stable_rank"] == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(MetricError, match="all zeros"):
        spectrum_metrics(singular_values(np.zeros((50, 8))))
    bad = rng.standard_normal((50, 8))
    bad[3, 2] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        singular_values(bad)


def tiny_model(seed=0, layers=2):
    return tiny_gpt_neox(hidden=16, layers=layers, heads=2, vocab=20, context=12, seed=seed)


def test_forward_metrics_against_a_hand_computation():
    model = tiny_model()
    docs = [rng.integers(0, 20, n).astype(np.int32) for n in (12, 30, 5, 1, 9)]
    out = forward_metrics(model, docs, sequence_length=12, batch_size=3)
    seqs = chunk_documents(docs, 12)
    # No piece crosses a document; the pieces of the 30-token one overlap by a token.
    assert [len(s) for s in seqs] == [12, 12, 12, 8, 5, 9]
    nll, n, correct = 0.0, 0, 0
    states = {k: [] for k in ("emb", "b1", "b2", "final")}
    inner = model.gpt_neox
    with torch.no_grad():
        for s in seqs:
            ids = torch.from_numpy(s.astype(np.int64))[None]
            logits = model(input_ids=ids).logits[0, :-1].double()
            logp = torch.log_softmax(logits, -1)
            target = ids[0, 1:]
            nll -= logp[torch.arange(len(target)), target].sum().item()
            correct += int((logp.argmax(-1) == target).sum())
            n += len(target)
            hs = inner(input_ids=ids, output_hidden_states=True).hidden_states
            states["emb"].append(inner.embed_in(ids)[0])
            states["b1"].append(hs[1][0])
            states["final"].append(inner(input_ids=ids).last_hidden_state[0])
            # The last block's raw output: the same model with its final norm bypassed.
            norm, inner.final_layer_norm = inner.final_layer_norm, torch.nn.Identity()
            states["b2"].append(inner(input_ids=ids).last_hidden_state[0])
            inner.final_layer_norm = norm
    assert out["loss"] == pytest.approx(nll / n, rel=1e-6)
    assert out["accuracy"] == pytest.approx(correct / n)
    # Every token but a document's first is predicted, once.
    assert out["n_predicted_tokens"] == n == sum(len(d) - 1 for d in docs if len(d) > 1)
    expected = [
        naive_anisotropy(torch.cat(states[k]).double().numpy())
        for k in ("emb", "b1", "b2", "final")
    ]
    np.testing.assert_allclose(out["anisotropy"], expected, atol=1e-6)
    assert out["n_layers"] == 2


def test_sample_shorter_than_one_sequence_is_measured():
    model = tiny_model()
    docs = [np.array([1, 2, 3], dtype=np.int32), np.array([4, 5], dtype=np.int32)]
    out = forward_metrics(model, docs, sequence_length=12, batch_size=4)
    assert out["n_predicted_tokens"] == 3 and np.isfinite(out["loss"])
    with pytest.raises(MetricError, match="nothing to predict"):
        forward_metrics(model, [np.array([1], dtype=np.int32)], sequence_length=12, batch_size=4)


def test_nan_weights_give_a_clear_error():
    model = tiny_model()
    with torch.no_grad():
        model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight[0, 0] = float("nan")
    with pytest.raises(MetricError, match="NaN"):
        forward_metrics(
            model, [np.arange(10, dtype=np.int32)] * 2, sequence_length=12, batch_size=4
        )


def test_parameter_counts():
    model = tiny_model()
    total = sum(p.numel() for p in model.parameters())
    emb = 20 * 16 * 2  # embed_in and the untied embed_out
    assert parameter_counts(model) == {"n_params": total, "n_params_no_embedding": total - emb}


PAPER_TABLES = ("checkpoint_metrics", "head_spectra", "checkpoints")


def measure(tmp_path, name, step, directory, eval_path):
    from saturation.measuring import checkpoint_tables, write_tables

    out = tmp_path / "m" / name / str(step)
    tables = checkpoint_tables(
        name, step, step * 100, directory, eval_path, 12, 4, "float32", "cpu", False
    )
    write_tables(tables, {t: out / f"{t}.parquet" for t in PAPER_TABLES})
    return out


def test_measure_and_aggregate_flag_duplicate_weights(tmp_path):
    from saturation.aggregation import aggregate_metrics
    from saturation.corpus import corpus_table
    from saturation.io import write_parquet
    from saturation.tables import HEAD_SPECTRA_SCHEMA, METRICS_SCHEMA

    eval_path = tmp_path / "eval.parquet"
    write_parquet(
        corpus_table([0, 1], "eval", [np.arange(12, dtype=np.int32), np.arange(7, dtype=np.int32)]),
        eval_path,
    )
    dirs = {}
    for step, seed in ((0, 0), (10, 1), (20, 1)):  # step 20 serves step 10's weights
        dirs[step] = tmp_path / f"ck{step}"
        tiny_model(seed).save_pretrained(dirs[step])
    outs = [measure(tmp_path, "tiny", s, d, eval_path) for s, d in dirs.items()]
    m = pq.read_table(outs[0] / "checkpoint_metrics.parquet")
    assert m.schema.equals(METRICS_SCHEMA)
    assert pq.read_table(outs[0] / "head_spectra.parquet").schema.equals(HEAD_SPECTRA_SCHEMA)
    names = m.column("metric").to_pylist()
    assert names.count("anisotropy") == 4 and "singular_entropy" in names and "loss" in names
    assert set(m.column("tokens_seen").to_pylist()) == {0}
    tables = tmp_path / "tables"

    def run_aggregate(**kw):
        aggregate_metrics(
            {t: [o / f"{t}.parquet" for o in outs] for t in PAPER_TABLES},
            {t: tables / f"{t}.parquet" for t in PAPER_TABLES},
            **kw,
        )

    run_aggregate()
    ck = pd.read_parquet(tables / "checkpoints.parquet").set_index("step")
    # Neither member of the group is trusted as the original.
    assert ck.loc[20, "duplicate_of_step"] == 10 and ck.loc[10, "duplicate_of_step"] == 20
    assert pd.isna(ck.loc[0, "duplicate_of_step"])
    assert ck.status.to_dict() == {0: "measured", 10: "duplicate", 20: "duplicate"}
    assert ck.loc[0, "head_fingerprint"] != ck.loc[10, "head_fingerprint"]
    metrics = pd.read_parquet(tables / "checkpoint_metrics.parquet")
    assert metrics.groupby("step").duplicate_weights.all().to_dict() == {
        0: False,
        10: True,
        20: True,
    }
    # The analysis uses what is left, with a warning; a trusted step stays in.
    from saturation.aggregation import trusted_metrics

    assert set(trusted_metrics(metrics).step) == {0}
    run_aggregate(trusted_steps={"tiny": [10]})
    metrics = pd.read_parquet(tables / "checkpoint_metrics.parquet")
    assert set(trusted_metrics(metrics).step) == {0, 10}
    assert not metrics.value.isna().any()
    spectra = pd.read_parquet(tables / "head_spectra.parquet")
    assert len(spectra) == 3 * 16


def test_a_model_whose_vocabulary_misses_the_tokenizer_ids_is_refused():
    from saturation.measuring import check_vocabulary

    docs = [np.array([1, 5, 19], dtype=np.int32), np.array([], dtype=np.int32)]
    check_vocabulary(docs, 20, "tiny", 3, "org/tok")  # ids 0..19 fit 20 rows
    docs.append(np.array([20], dtype=np.int32))
    with pytest.raises(
        ValueError, match="tiny step 3 has an output vocabulary of 20 rows.*'org/tok'.*token id 20"
    ):
        check_vocabulary(docs, 20, "tiny", 3, "org/tok")
    # A tokenizer with more ids than the head has rows is refused even where the sample
    # happens to hold only ids the head covers.
    check_vocabulary(docs[:2], 20, "tiny", 3, "org/tok", tokenizer_size=20)
    with pytest.raises(ValueError, match="20 rows, but its tokenizer 'org/tok' has 21 ids"):
        check_vocabulary(docs[:2], 20, "tiny", 3, "org/tok", tokenizer_size=21)


def test_an_unreadable_checkpoint_is_recorded_and_the_job_measures_the_rest(tmp_path):
    """One job of three checkpoints, the middle one's config another width's: the two good
    ones are measured as they are alone, the bad one is recorded with its reason; the
    aggregation then stops naming it (metrics.unreadable: fail) or leaves it out (skip)."""
    import json

    from saturation.aggregation import UnreadableCheckpoints, aggregate_metrics, left_out_report
    from saturation.corpus import corpus_table
    from saturation.io import write_parquet
    from saturation.measuring import measure_checkpoint

    eval_path = tmp_path / "eval.parquet"
    write_parquet(corpus_table([0, 1], "eval", [np.arange(12, dtype=np.int32)] * 2), eval_path)
    dirs = {}
    for step in (0, 10, 20):
        dirs[step] = tmp_path / f"ck{step}"
        tiny_model(step).save_pretrained(dirs[step])
    config = json.loads((dirs[10] / "config.json").read_text())
    config["hidden_size"] = 32
    (dirs[10] / "config.json").write_text(json.dumps(config))
    job = tmp_path / "job"
    checkpoints = [
        {"model": "tiny", "step": s, "tokens_seen": s * 100, "checkpoint": str(d),
         "eval": str(eval_path), "tokenizer": None}
        for s, d in dirs.items()
    ]  # fmt: skip
    measure_checkpoint(
        checkpoints,
        None,
        {t: job / f"{t}.parquet" for t in PAPER_TABLES},
        sequence_length=12,
        batch_size=4,
        dtype="float32",
        device="cpu",
        allow_pickle=False,
    )
    ck = pd.read_parquet(job / "checkpoints.parquet").set_index("step")
    assert ck.status.to_dict() == {0: "measured", 10: "unreadable", 20: "measured"}
    assert ck.loc[10, "reason"].startswith(f"checkpoint {dirs[10]}: its weights do not match")
    assert "hidden size 32" in ck.loc[10, "reason"] and pd.isna(ck.loc[0, "reason"])
    # The good ones' rows are those of measuring each alone.
    alone = measure(tmp_path, "tiny", 20, dirs[20], eval_path)
    job_rows = pd.read_parquet(job / "checkpoint_metrics.parquet")
    pd.testing.assert_frame_equal(
        job_rows[job_rows.step == 20].reset_index(drop=True),
        pd.read_parquet(alone / "checkpoint_metrics.parquet"),
    )
    assert set(job_rows.step) == {0, 20}
    tables = tmp_path / "tables"
    outputs = {t: tables / f"{t}.parquet" for t in PAPER_TABLES}
    inputs = {t: [job / f"{t}.parquet"] for t in PAPER_TABLES}
    with pytest.raises(UnreadableCheckpoints) as info:
        aggregate_metrics(inputs, outputs, unreadable="fail")
    message = str(info.value)
    assert (
        f"1 checkpoint(s) could not be read, and metrics.unreadable is 'fail':\n  tiny step 10: checkpoint {dirs[10]}"
        in message
    )
    assert "metrics.unreadable: skip" in message
    assert f"snakemake --forcerun {job / 'checkpoints.parquet'})" in message
    assert not outputs["checkpoints"].exists()
    aggregate_metrics(inputs, outputs, unreadable="skip")
    table = pd.read_parquet(outputs["checkpoints"]).set_index("step")
    assert table.status.to_dict() == {0: "measured", 10: "unreadable", 20: "measured"}
    assert set(pd.read_parquet(outputs["checkpoint_metrics"]).step) == {0, 20}
    report = left_out_report(str(outputs["checkpoints"]))
    assert report.startswith("1 checkpoint(s) were unreadable and are left out")
    assert f"tiny step 10: checkpoint {dirs[10]}" in report
    # Every checkpoint unreadable: nothing is left to analyse, and skip says so by name.
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    only = tmp_path / "only"
    only.mkdir()
    for name in PAPER_TABLES:
        t = pq.read_table(job / f"{name}.parquet")
        pq.write_table(t.filter(pc.equal(t.column("step"), 10)), only / f"{name}.parquet")
    inputs = {t: [only / f"{t}.parquet"] for t in PAPER_TABLES}
    with pytest.raises(UnreadableCheckpoints, match=r"none of the run's checkpoints could be read"):
        aggregate_metrics(inputs, outputs, unreadable="skip")


def test_a_device_this_machine_lacks_names_its_key():
    import torch

    from saturation.devices import DeviceError, resolve_device

    assert resolve_device("cpu", "metrics.device") == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto", "metrics.device") == "cuda"
        assert resolve_device("cuda", "metrics.device") == "cuda"
        count = torch.cuda.device_count()
        with pytest.raises(DeviceError, match=rf"'metrics.device': cuda:{count} is asked for"):
            resolve_device(f"cuda:{count}", "metrics.device")
    else:
        assert resolve_device("auto", "metrics.device") == "cpu"
        with pytest.raises(
            DeviceError, match=r"config key 'rank_heads.device': cuda is asked for, but torch"
        ):
            resolve_device("cuda", "rank_heads.device")
