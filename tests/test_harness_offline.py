"""The harness's own tasks offline: `prefetch` fills the datasets cache with the data of
`downstream.tasks` through lm-eval's own task loading, and an evaluation then runs with
HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1, making no request. Against the loopback hub,
with a data set repo shaped as `EleutherAI/lambada_openai` is, and the unmodified clients."""

import json
from pathlib import Path

import pandas as pd

from conftest import run_python

PREFETCH = """
import sys
from huggingface_hub import snapshot_download
from saturation.downstream import prefetch_tasks

out, ckpt, commit = sys.argv[1:4]
prefetch_tasks(["lambada_openai"], None, {"attempts": 3, "base": 0.05, "cap": 0.1}, out)
snapshot_download("EleutherAI/pythia-14m", revision=commit, local_dir=ckpt)
"""

EVALUATE = """
import sys
from saturation.downstream import evaluate_downstream

ckpt, table, raw = sys.argv[1:4]
evaluate_downstream(
    [{"model": "pythia-14m", "step": 2000, "checkpoint": ckpt, "tokenizer": None}],
    table,
    raw,
    tasks=["lambada_openai"],
    include_path=None,
    num_fewshot=0,
    batch_size=8,
    limit=12,
    device="cpu",
    dtype="float32",
    allow_pickle=False,
    seed=1234,
    hub=None,
)
"""


def test_prefetched_harness_tasks_evaluate_offline_with_no_request(loopback_hub, tmp_path):
    from hub.repos import add_lambada

    server, facts = loopback_hub
    texts = add_lambada(server)
    hf = {"HF_HOME": str(tmp_path / "hf")}
    ckpt, out = tmp_path / "ckpt", tmp_path / "tasks.json"
    server.clear()
    result = run_python(PREFETCH, out, ckpt, facts["commits"]["pythia-14m"][2000], **hf)
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads(out.read_text())["tasks"]
    assert record == [
        {
            "task": "lambada_openai",
            "dataset_path": "EleutherAI/lambada_openai",
            "dataset_name": "default",
            "splits": {"test": len(texts)},
        }
    ]
    fetched = {
        r["file"] for r in server.downloads() if r.get("repo") == "EleutherAI/lambada_openai"
    }
    assert "default/test-00000-of-00001.parquet" in fetched
    assert "en/test-00000-of-00001.parquet" not in fetched  # only the task's config

    # Online and offline (after the prefetch, nothing asked of the hub) give the same scores.
    online = run_python(EVALUATE, ckpt, tmp_path / "on.parquet", tmp_path / "on.json", **hf)
    assert online.returncode == 0, online.stderr[-4000:]
    server.log.clear()
    offline_env = {**hf, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    offline = run_python(
        EVALUATE, ckpt, tmp_path / "off.parquet", tmp_path / "off.json", **offline_env
    )
    assert offline.returncode == 0, offline.stderr[-4000:]
    assert server.log == []  # zero requests
    on, off = pd.read_parquet(tmp_path / "on.parquet"), pd.read_parquet(tmp_path / "off.parquet")
    assert set(off["metric"]) == {"acc", "perplexity"} and (off["n_items"] == 12).all()
    pd.testing.assert_frame_equal(on, off)

    # Offline without the prefetch: the job says what to run, before any model is loaded.
    empty = {**offline_env, "HF_HOME": str(tmp_path / "empty")}
    missing = run_python(EVALUATE, ckpt, tmp_path / "x.parquet", tmp_path / "x.json", **empty)
    assert missing.returncode != 0
    assert "run `snakemake prefetch` where the network is" in missing.stderr
    assert not (tmp_path / "x.parquet").exists()
    assert Path(ckpt / "config.json").is_file()
