"""StoryCloze (Table 1's column, data by request only): the task written for the distributed
CSV files runs through the harness and scores every ending as a direct computation does;
a folder without the files says which file and where to get it."""

import csv

import numpy as np
import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.story_cloze import COLUMNS, FILES, StoryClozeError, data_files, story_cloze_task


def write_story_cloze(folder, n: int = 12, seed: int = 0) -> list[dict]:
    """The two CSV files as the ROCStories site distributes them (their names, columns)."""
    from hub.repos import documents

    rng = np.random.default_rng(seed)
    sentences = [s for d in documents(8 * n, seed) for s in d.split(" and ") if s.strip()]
    folder.mkdir(parents=True, exist_ok=True)
    stories = {}
    for split, name in FILES.items():
        rows = []
        for i in range(n):
            pick = rng.choice(len(sentences), size=6, replace=False)
            s = [" ".join(sentences[j].split()[:8]).rstrip(".") + "." for j in pick]
            rows.append(
                dict(zip(COLUMNS, [f"{split}-{i}", *s, int(rng.integers(1, 3))], strict=True))
            )
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        stories[split] = rows
    return stories["test"]


def test_story_cloze_through_the_harness_equals_a_direct_computation(tmp_path):
    import lm_eval
    from hub.repos import documents, tokenizer_files
    from transformers import AutoTokenizer

    from saturation.downstream import task_manager

    model = tiny_gpt_neox(hidden=16, layers=1, heads=2, vocab=384, context=256, seed=4)
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt, safe_serialization=True)
    for name, data in tokenizer_files(documents(60, seed=2)).items():
        (ckpt / name).write_bytes(data)
    stories = write_story_cloze(tmp_path / "rocstories")
    story_cloze_task(str(tmp_path / "rocstories"), str(tmp_path / "tasks/storycloze_2016.yaml"))
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={ckpt},dtype=float32",
        tasks=["storycloze_2016"],
        task_manager=task_manager([str(tmp_path / "tasks")], ["storycloze_2016"]),
        batch_size=4,
        device="cpu",
        log_samples=True,
    )
    samples = sorted(out["samples"]["storycloze_2016"], key=lambda s: s["doc_id"])
    assert len(samples) == len(stories)
    tok = AutoTokenizer.from_pretrained(ckpt)
    correct = []
    with torch.no_grad():
        for story, sample in zip(stories, samples, strict=True):
            context = " ".join(story[f"InputSentence{i}"] for i in range(1, 5))
            ctx = tok.encode(context)
            lls = []
            for ending in (story["RandomFifthSentenceQuiz1"], story["RandomFifthSentenceQuiz2"]):
                cont = tok.encode(context + " " + ending)[len(ctx) :]
                inp = torch.tensor([(ctx + cont)[:-1]])
                logp = torch.log_softmax(model(inp).logits[0, -len(cont) :], -1)
                lls.append(float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum()))
            assert len(ctx) + max(map(len, [cont])) < 256  # nothing cut from the left
            harness = [float(r[0]) for r in sample["filtered_resps"]]
            np.testing.assert_allclose(harness, lls, rtol=1e-5)
            correct.append(int(np.argmax(lls)) == story["AnswerRightEnding"] - 1)
    assert out["results"]["storycloze_2016"]["acc,none"] == pytest.approx(np.mean(correct))


def test_a_folder_without_the_files_names_the_file_and_where_to_get_it(tmp_path):
    with pytest.raises(StoryClozeError, match="is not a folder"):
        data_files(str(tmp_path / "nowhere"))
    (tmp_path / "other.csv").write_text("a,b\n")
    with pytest.raises(StoryClozeError, match="lacks 'cloze_test_val__spring2016.*rocstories"):
        data_files(str(tmp_path))
    write_story_cloze(tmp_path, n=2)
    path = tmp_path / FILES["test"]
    path.write_text(path.read_text().replace("AnswerRightEnding", "Answer"))
    with pytest.raises(StoryClozeError, match=r"has no column \['AnswerRightEnding'\]"):
        data_files(str(tmp_path))
