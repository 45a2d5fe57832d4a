import pytest

from saturation.schedule import checkpoint_steps, select_steps


def test_pythia_schedule_has_154_revisions():
    steps = checkpoint_steps(143000, 512, 1000)
    assert len(steps) == 154
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:13] == [1000, 2000] and steps[-1] == 143000
    # Independent reference: the schedule as Pythia's model card lists it.
    assert steps == [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))


def test_final_step_always_included():
    assert checkpoint_steps(250, 4, 100) == [0, 1, 2, 4, 100, 200, 250]


def test_subset_must_lie_on_the_schedule():
    sched = checkpoint_steps(2000, 128, 250)
    assert select_steps(sched, [2000, 0, 250]) == [0, 250, 2000]
    assert select_steps(sched, None) == sched
    with pytest.raises(ValueError, match=r"\[300\]"):
        select_steps(sched, [250, 300])
