"""bench/gpu_check.py's CPU half, as CI runs it: the workflow's measuring, rank-head and
downstream code on the two models it builds, and a plain statement that the CUDA half did
not run on a machine without a CUDA device."""

import json
import math
import subprocess
import sys

import torch

from conftest import ROOT


def test_the_gpu_check_runs_its_cpu_half_without_a_device(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--quick"]
    result = subprocess.run(
        [*command, "--no-workflow", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["failures"] == []
    if torch.cuda.is_available():  # the CUDA half ran too: every check held
        assert "cuda" in report["neox-70m"] and "cuda" in report["llama-tied"]
    else:
        assert "The CUDA half did not run: this machine has no CUDA device." in result.stdout
        assert report["cuda_half"] == "not run: no CUDA device"
    for name, vocab in (("neox-70m", 50304), ("llama-tied", 32000)):
        cpu = report[name]["cpu"]
        # Random weights: the loss is near log V, the uniform prediction's.
        assert abs(cpu["loss"] - math.log(vocab)) < 0.5, (name, cpu["loss"])
        assert len(cpu["rank_heads_eval_loss"]) == 2
        assert all(math.isfinite(x) for x in cpu["rank_heads_eval_loss"])
        acc = cpu["downstream"]["synthetic_choice acc"]
        assert 0 <= acc <= 1
