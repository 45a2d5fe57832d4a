"""Every causal-LM family measures: loss and each layer's anisotropy equal a direct
computation from ``output_hidden_states`` (plus hooks for the last block's raw output and
the head's input, which those states do not hold), for tied heads (GPT-2, Llama, Gemma),
OPT's ``project_out`` (a head narrower than the blocks), Gemma's embedding scaling, and a
model run in bf16."""

import numpy as np
import pytest
import torch
import transformers
from hub import families

from saturation.metrics import find_blocks, forward_metrics, parameter_counts

V = 40


def naive_anisotropy(h):
    """Mean pairwise cosine over every pair of non-zero vectors (a zero vector has no
    direction: Gemma's padding row embeds token 0 as zeros)."""
    h = h[np.linalg.norm(h, axis=1) > 0]
    u = h / np.linalg.norm(h, axis=1, keepdims=True)
    cos = u @ u.T
    n = len(h)
    return (cos.sum() - np.trace(cos)) / (n * (n - 1))


def gpt2():
    return families.gpt2(V)


def opt():
    return families.opt(V)


def llama():
    return families.llama(V)


def gemma():
    return families.gemma(V)


def gpt_neox():
    return families.gpt_neox(V)


FAMILIES = {
    "gpt2": (gpt2, torch.float32, True, 16),
    "opt": (opt, torch.float32, True, 8),
    "llama": (llama, torch.float32, True, 16),
    "gemma": (gemma, torch.float32, True, 16),
    "gpt_neox": (gpt_neox, torch.float32, False, 16),
    "llama_bf16": (llama, torch.bfloat16, True, 16),
}


def direct(model, seqs):
    """Loss and the layer list by the plain route: one unpadded forward per sequence with
    output_hidden_states; hooks only where those states do not hold a layer."""
    blocks = find_blocks(model)
    head = model.get_output_embeddings()
    grabbed = {}
    hooks = [
        blocks[-1].register_forward_hook(
            lambda m, a, out: grabbed.__setitem__("last", out[0] if isinstance(out, tuple) else out)
        ),
        head.register_forward_pre_hook(lambda m, a: grabbed.__setitem__("head", a[0])),
    ]
    layers = [[] for _ in range(len(blocks) + 2)]
    nll, n = 0.0, 0
    try:
        with torch.no_grad():
            for s in seqs:
                ids = torch.from_numpy(s.astype(np.int64))[None]
                out = model(input_ids=ids, output_hidden_states=True)
                hs = out.hidden_states  # embeddings, then the input of each next block
                for i in range(len(blocks)):
                    layers[i].append(hs[i][0])
                layers[len(blocks)].append(grabbed["last"][0])
                layers[len(blocks) + 1].append(grabbed["head"][0])
                logp = torch.log_softmax(out.logits[0, :-1].float(), -1).double()
                nll -= logp[torch.arange(len(s) - 1), ids[0, 1:]].sum().item()
                n += len(s) - 1
    finally:
        for h in hooks:
            h.remove()
    aniso = [naive_anisotropy(torch.cat(x).double().numpy()) for x in layers]
    return nll / n, aniso


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_measures_like_a_direct_computation(family):
    build, dtype, tied, head_width = FAMILIES[family]
    torch.manual_seed(0)
    model = build().to(dtype).eval()
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, V, n).astype(np.int32) for n in (20, 9, 14, 5, 31)]
    # bf16 kernels round differently for a padded batch than for one sequence (1e-6 of the
    # loss); one sequence a batch compares the metric, not the padding's rounding.
    batch = 1 if dtype == torch.bfloat16 else 3
    out = forward_metrics(model, docs, sequence_length=16, batch_size=batch)
    # Pieces of 16 tokens that share one token, so every token but the first is predicted.
    seqs = [d[i : i + 16] for d in docs for i in range(0, len(d) - 1, 15)]
    loss, aniso = direct(model, seqs)
    assert out["loss"] == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(out["anisotropy"], aniso, atol=1e-6)
    assert out["n_layers"] == model.config.num_hidden_layers
    assert len(out["anisotropy"]) == model.config.num_hidden_layers + 2
    head = model.get_output_embeddings().weight
    assert head.shape == (V, head_width)
    assert (head.data_ptr() == model.get_input_embeddings().weight.data_ptr()) == tied
    # A tied head is counted once, with the embeddings.
    counts = parameter_counts(model)
    assert counts["n_params"] == sum(p.numel() for p in model.parameters())
    embeddings = {
        id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)
    }
    embeddings[id(head)] = head.numel()
    assert counts["n_params_no_embedding"] == counts["n_params"] - sum(embeddings.values())
    print(
        f"{family}: {out['n_layers']} layers, head input {head_width}, "
        f"{'tied' if tied else 'untied'} head"
    )


@pytest.mark.parametrize("family", ["gpt2", "opt", "llama", "gemma", "gpt_neox"])
def test_feature_cache_holds_the_heads_input(family):
    """The rank heads train on the head's input: for OPT that is after project_out."""
    from saturation.heads import head_inputs

    build, dtype, _, head_width = FAMILIES[family]
    torch.manual_seed(0)
    model = build().eval()
    rng = np.random.default_rng(2)
    seqs = [rng.integers(0, V, n).astype(np.int32) for n in (12, 7)]
    feats = torch.cat([f for f, _ in head_inputs(model, seqs, batch_size=2, device="cpu")])
    grabbed = []
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda m, a: grabbed.append(a[0][0, :-1])
    )
    with torch.no_grad():
        for s in seqs:
            model(input_ids=torch.from_numpy(s.astype(np.int64))[None])
    hook.remove()
    assert feats.shape == (sum(len(s) - 1 for s in seqs), head_width)
    torch.testing.assert_close(feats, torch.cat(grabbed), atol=1e-5, rtol=1e-5)


def test_opt_checkpoint_records_its_narrow_head(tmp_path):
    """Measured from a saved checkpoint: OPT's head spectrum has as many values as the
    head's input is wide, and the checkpoint row says so."""

    from saturation.corpus import corpus_table
    from saturation.io import write_parquet
    from saturation.measuring import checkpoint_tables

    torch.manual_seed(0)
    opt().save_pretrained(tmp_path / "opt")
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, V, n).astype(np.int32) for n in (20, 11, 9)]
    n_bytes = [57, 31, 22]  # the UTF-8 bytes of each document's predicted text
    write_parquet(corpus_table([0, 1, 2], "eval", docs, n_bytes), tmp_path / "eval.parquet")
    tables = checkpoint_tables(
        "opt-tiny",
        0,
        100,
        tmp_path / "opt",
        tmp_path / "eval.parquet",
        16,
        4,
        "float32",
        "cpu",
        False,
    )
    row = tables["checkpoints"].to_pylist()[0]
    assert (row["hidden_size"], row["head_input_size"], row["tied_head"]) == (16, 8, True)
    assert row["n_layers"] == 2 and row["vocab_size"] == V
    assert tables["head_spectra"].num_rows == 8
    # Bits per byte: the summed loss over the sample's bytes, from a direct computation.
    m = tables["checkpoint_metrics"].to_pandas().set_index("metric").value
    model = transformers.OPTForCausalLM.from_pretrained(tmp_path / "opt").eval()
    seqs = [d[i : i + 16] for d in docs for i in range(0, len(d) - 1, 15)]
    loss, _ = direct(model, seqs)
    total_nll = loss * sum(len(d) - 1 for d in docs)
    assert m["nats_per_byte"] == pytest.approx(total_nll / 110, rel=1e-6)
    assert m["bits_per_byte"] == pytest.approx(total_nll / 110 / np.log(2), rel=1e-6)
