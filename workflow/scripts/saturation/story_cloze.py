"""StoryCloze, one of Table 1's columns, whose data is distributed by request only.

The harness's ``storycloze_2016`` task reads the ``LSDSem/story_cloze`` data set, which holds no
data: its files come from the ROCStories site after a request form. Given the folder where they
were saved (``downstream.story_cloze_dir``), the workflow writes a task of the same name that
reads them as CSV, with the harness's own prompt, choices and metric (the CSV's column names
for the data set's), and puts it first on the harness's include path; without it, StoryCloze
is left out of the evaluation and Table 1 says what is missing and how to get it."""

from __future__ import annotations

from pathlib import Path

TASK = "storycloze_2016"
WHERE = "https://cs.rochester.edu/nlp/rocstories/"
# The files as the ROCStories site distributes them (and LSDSem/story_cloze's loader names).
FILES = {
    "validation": "cloze_test_val__spring2016 - cloze_test_ALL_val.csv",
    "test": "cloze_test_test__spring2016 - cloze_test_ALL_test.csv",
}
COLUMNS = [
    "InputStoryid",
    "InputSentence1",
    "InputSentence2",
    "InputSentence3",
    "InputSentence4",
    "RandomFifthSentenceQuiz1",
    "RandomFifthSentenceQuiz2",
    "AnswerRightEnding",
]
MISSING = (
    f"StoryCloze ({TASK}): its data is distributed by request only; request the Story Cloze "
    f"Test (Spring 2016) at {WHERE}, save its two CSV files in a folder and name it in "
    "downstream.story_cloze_dir"
)


class StoryClozeError(ValueError):
    pass


def data_files(folder: str) -> dict[str, str]:
    """The two CSV files of the Story Cloze Test in ``folder``, checked: present, with the
    columns the task reads."""
    import csv

    root = Path(folder)
    if not root.is_dir():
        raise StoryClozeError(f"config key 'downstream.story_cloze_dir': {folder} is not a folder")
    files = {}
    for split, name in FILES.items():
        path = root / name
        if not path.is_file():
            held = sorted(p.name for p in root.glob("*.csv")) or "no CSV file"
            raise StoryClozeError(
                f"config key 'downstream.story_cloze_dir': {folder} lacks '{name}' (the "
                f"{split} split as {WHERE} distributes it); it holds {held}"
            )
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        absent = [c for c in COLUMNS if c not in header]
        if absent:
            raise StoryClozeError(
                f"config key 'downstream.story_cloze_dir': {path} has no column {absent}"
            )
        files[split] = str(path.resolve())
    return files


def task_yaml(files: dict[str, str]) -> str:
    """The harness's ``storycloze_2016`` task (lm-eval's storycloze_2016.yaml), reading the
    distributed CSV files."""
    import yaml

    sentences = "[InputSentence1, InputSentence2, InputSentence3, InputSentence4]"
    task = {
        "task": TASK,
        "dataset_path": "csv",
        "dataset_kwargs": {"data_files": files},
        "output_type": "multiple_choice",
        "validation_split": "validation",
        "test_split": "test",
        "doc_to_text": "{{" + sentences + "|join(' ')}}",
        "doc_to_target": "{{AnswerRightEnding-1}}",
        "doc_to_choice": "{{[RandomFifthSentenceQuiz1, RandomFifthSentenceQuiz2]}}",
        "should_decontaminate": True,
        "doc_to_decontamination_query": "{{" + sentences + "|join(' ')}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    return yaml.safe_dump(task, sort_keys=False)


def story_cloze_task(folder: str, out: str) -> None:
    """Write the task YAML for the files in ``folder`` (Snakemake-facing)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(task_yaml(data_files(folder)))


def harness_tasks(tasks: list[str], folder: str | None) -> tuple[list[str], dict[str, str]]:
    """The tasks the harness can run, and those left out with the reason: StoryCloze
    without its data."""
    if TASK in tasks and folder is None:
        return [t for t in tasks if t != TASK], {TASK: MISSING}
    return list(tasks), {}
