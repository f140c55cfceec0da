"""Scoring GenEval-layout folders: the writer, the reader, the scores and the vhs-eval-shapes CLI."""

import json

import numpy as np
import pytest

from vhs.shapes import (
    MISTAKES,
    TASKS,
    LayoutError,
    PromptSpec,
    evaluation_prompts,
    near_miss_scene,
    read_prompt_folders,
    render_scene,
    scene_for_prompt,
    score_folder,
    write_prompt_folder,
)
from vhs.shapes.cli import main


def _write_folder(root, prompts, right: bool, samples: int = 2, first_index: int = 0) -> None:
    """Each prompt with `samples` right scenes, or near misses when `right` is False."""
    rng = np.random.default_rng(first_index)
    for index, spec in enumerate(prompts, start=first_index):
        scenes = [
            scene_for_prompt(spec, rng) if right else near_miss_scene(spec, rng, MISTAKES[spec.tag][0])
            for _ in range(samples)
        ]
        write_prompt_folder(root, index, spec, [render_scene(scene) for scene in scenes])


def _one_prompt_per_task() -> list[PromptSpec]:
    first_of_task = {}
    for spec in evaluation_prompts():
        first_of_task.setdefault(spec.tag, spec)
    return list(first_of_task.values())


def test_writer_follows_genevals_layout(tmp_path):
    spec = PromptSpec.color_attr(("red", "circle"), ("green", "square"))
    images = [render_scene(scene_for_prompt(spec, np.random.default_rng(i))) for i in range(3)]
    folder = write_prompt_folder(tmp_path, 7, spec, images)
    assert folder == tmp_path / "00007"
    metadata_lines = (folder / "metadata.jsonl").read_text().splitlines()
    prompt = "a photo of a red circle and a green square"
    assert [json.loads(line) for line in metadata_lines] == [{
        "tag": "color_attr",
        "include": [{"class": "circle", "count": 1, "color": "red"},
                    {"class": "square", "count": 1, "color": "green"}],
        "prompt": prompt,
    }]  # fmt: skip
    samples = sorted(path.name for path in (folder / "samples").iterdir())
    assert samples == ["0000.png", "0001.png", "0002.png"]
    (read,) = read_prompt_folders(tmp_path)
    assert (read.spec, read.prompt, len(read.sample_paths)) == (spec, prompt, 3)


def test_right_scenes_score_one_and_near_misses_zero(tmp_path):
    prompts = _one_prompt_per_task()
    _write_folder(tmp_path / "right", prompts, right=True)
    _write_folder(tmp_path / "wrong", prompts, right=False)
    right, wrong = score_folder(tmp_path / "right"), score_folder(tmp_path / "wrong")
    assert right["tasks"] == {spec.tag: 1.0 for spec in prompts} and right["overall"] == 1.0
    assert wrong["tasks"] == {spec.tag: 0.0 for spec in prompts} and wrong["overall"] == 0.0
    assert right["images"] == {spec.tag: 2 for spec in prompts}


def test_overall_score_is_the_mean_of_task_scores_not_of_images(tmp_path):
    _write_folder(tmp_path, [PromptSpec.single_object("circle")], right=True, samples=1)
    _write_folder(tmp_path, [PromptSpec.counting("ring", 2)], right=False, samples=3, first_index=1)
    summary = score_folder(tmp_path)
    assert summary["tasks"] == {"single_object": 1.0, "counting": 0.0}
    assert summary["overall"] == 0.5


@pytest.mark.slow  # renders and scores the evaluation prompts
def test_cli_renders_reference_images_and_scores_them_all_correct(tmp_path, capsys):
    assert main(["render-reference", str(tmp_path), "--samples", "1"]) == 0
    assert len(list(tmp_path.iterdir())) == 553
    assert main([str(tmp_path), "--results", str(tmp_path / "results.jsonl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "scored 553 images" in lines[1]
    scores = dict(line.split()[:2] for line in lines[2:])
    assert scores == {tag: "1.000" for tag in (*TASKS, "overall")}
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == 553 and all(result["correct"] for result in results)


def _malformed(root, problem: str) -> None:
    _write_folder(root, [PromptSpec.single_object("circle")], right=True, samples=1)
    folder = root / "00000"
    if problem == "bad json":
        (folder / "metadata.jsonl").write_text("{not json\n")
    elif problem == "unknown class":
        metadata = {"tag": "single_object", "include": [{"class": "dog"}]}
        (folder / "metadata.jsonl").write_text(json.dumps(metadata))
    elif problem == "no metadata":
        (folder / "metadata.jsonl").unlink()
    elif problem == "no samples":
        (folder / "samples" / "0000.png").unlink()
    elif problem == "broken image":
        (folder / "samples" / "0000.png").write_bytes(b"not a png")


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("bad json", "metadata.jsonl: not JSON"),
        ("unknown class", "'dog' is not one of"),
        ("no metadata", "metadata.jsonl: missing"),
        ("no samples", "samples: no .png images"),
        ("broken image", "0000.png: not a readable image"),
    ],
)
def test_cli_names_the_malformed_file(tmp_path, capsys, problem, message):
    _malformed(tmp_path, problem)
    assert main([str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("vhs-eval-shapes: error: ") and message in error


def test_cli_reports_a_missing_or_empty_folder(tmp_path, capsys):
    assert main([str(tmp_path / "absent")]) == 2
    assert "absent: no such folder" in capsys.readouterr().err
    (tmp_path / "not-a-prompt").mkdir()
    assert main(["score", str(tmp_path)]) == 2
    assert "no prompt folders" in capsys.readouterr().err
    with pytest.raises(LayoutError):
        score_folder(tmp_path)
