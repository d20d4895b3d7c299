"""The Optuna internals twins-nas relies on (`twins_nas.search.optuna_compat`): each one must
still exist and behave as used. A failure here means the installed Optuna changed them."""
from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from twins_nas.search.optuna_compat import fail_running_trial, hypervolume, storage_url


def test_the_internals_are_there():
    study = optuna.create_study()
    trial = study.ask()
    assert hasattr(study, "_storage") and isinstance(study._storage, optuna.storages.BaseStorage)
    frozen = study.get_trials(deepcopy=False)[0]
    assert isinstance(frozen._trial_id, int) and frozen._trial_id == trial._trial_id
    assert callable(study._storage.set_trial_user_attr)


def test_hypervolume_of_a_known_2d_front():
    # minimised; reference (4, 4): the union of [1,4]x[3,4], [2,4]x[2,4], [3,4]x[1,4]
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(front, np.array([4.0, 4.0])) == pytest.approx(3 * 1 + 2 * 1 + 1 * 1)
    assert hypervolume(front[:1], np.array([4.0, 4.0])) == pytest.approx(3.0)
    # three objectives: one point is a box
    assert hypervolume(np.array([[0.0, 0.5, 0.25]]), np.ones(3)) == pytest.approx(1.0 * 0.5 * 0.75)


def _journal_study(tmp_path, name="s") -> optuna.Study:
    return optuna.create_study(study_name=name, directions=["maximize", "minimize"],
                               storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.journal"))))


def test_fail_a_running_trial_of_another_process(tmp_path):
    owner = _journal_study(tmp_path)
    running = owner.ask()  # asked by "another process": this handle is not used again
    running.set_user_attr("worker", {"pid": 1})
    other = optuna.load_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "study.journal"))))
    frozen = other.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0]
    assert fail_running_trial(other, frozen, {"status": "failed", "fail_reason": "died"})
    back = optuna.load_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "study.journal")))).trials[0]
    assert back.state == TrialState.FAIL and back.datetime_complete is not None
    assert back.user_attrs == {"worker": {"pid": 1}, "status": "failed", "fail_reason": "died"}
    # a finished trial is left alone, and the caller is told
    assert not fail_running_trial(other, frozen, {"fail_reason": "again"})
    assert other.trials[0].user_attrs["fail_reason"] == "died"


def test_fail_a_running_trial_of_an_sqlite_study(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    study.ask()
    done = study.ask()
    study.tell(done, 1.0)
    running, complete = study.get_trials(deepcopy=False)
    assert fail_running_trial(study, running, {"fail_reason": "died"})
    assert not fail_running_trial(study, complete, {"fail_reason": "died"})
    again = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in again.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert again.trials[0].user_attrs == {"fail_reason": "died"} and again.trials[1].user_attrs == {}


def test_storage_url_of_a_loaded_study(tmp_path):
    db = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert storage_url(db) == f"sqlite:///{tmp_path / 'study.db'}"
    assert storage_url(_journal_study(tmp_path)) == f"journal:{tmp_path / 'study.journal'}"
    assert storage_url(optuna.create_study()) is None  # in memory
