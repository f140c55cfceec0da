"""The readable-student study trains only what it says it trains, and resumes. (That its student step is the
served one: tests/test_train_common.py, `DenoiserX0.with_hidden_state`.)"""

import copy
import json

import torch

from vhs.train import readable_student


def _fine_tune(preset, tmp_path, steps: int, map_only: bool):
    shipped_preset = copy.deepcopy(preset)
    shipped = readable_student.one_step_student(shipped_preset, 1)
    return readable_student.fine_tune(preset, shipped, 1, tmp_path, steps, 1.0, map_only)


def test_the_map_alone_leaves_the_student_and_fine_tuning_moves_it(tiny_preset, tmp_path, monkeypatch):
    monkeypatch.setattr(readable_student, "BATCH_SIZE", 4)
    frozen, tuned = copy.deepcopy(tiny_preset), copy.deepcopy(tiny_preset)
    before = {name: value.clone() for name, value in tiny_preset.transformer.state_dict().items()}

    _fine_tune(frozen, tmp_path / "map_only", 3, map_only=True)
    for name, value in frozen.transformer.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    _fine_tune(tuned, tmp_path / "tuned", 3, map_only=False)
    moved = [not torch.equal(value, before[name]) for name, value in tuned.transformer.state_dict().items()]
    assert any(moved)
    assert not frozen.transformer.training  # handed back in eval mode, frozen
    assert not any(parameter.requires_grad for parameter in tuned.transformer.parameters())


def test_a_finished_fine_tuning_is_restored_from_its_checkpoint(tiny_preset, tmp_path, monkeypatch):
    monkeypatch.setattr(readable_student, "BATCH_SIZE", 4)
    trained = copy.deepcopy(tiny_preset)
    _fine_tune(trained, tmp_path, 2, map_only=False)
    restored = copy.deepcopy(tiny_preset)
    _fine_tune(restored, tmp_path, 2, map_only=False)  # nothing left to train: the checkpoint's weights
    logged = (tmp_path / "loss_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [0, 1]
    for name, value in trained.transformer.state_dict().items():
        torch.testing.assert_close(restored.transformer.state_dict()[name], value, rtol=0, atol=0)
