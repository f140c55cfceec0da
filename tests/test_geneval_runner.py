"""`vhs-geneval` against a real Triton server on the exported tiny-random preset: GenEval's folder
layout, seeds by (prompt, sample), resuming only what is missing, and the shapes evaluator reading
the result."""

import json

import numpy as np
import pytest
from PIL import Image

from vhs.client.geneval import main as geneval_main
from vhs.client.vhs_client import VHSClient
from vhs.launcher.server import TritonServer
from vhs.shapes.evaluate import score_folder
from vhs.shapes.prompt_sets import evaluation_prompts

pytestmark = pytest.mark.server  # starts a real tritonserver


@pytest.fixture(scope="module")
def server(exported_tiny):
    with TritonServer(exported_tiny / "model_repository", build_dir="build/triton") as running:
        yield running


@pytest.fixture
def metadata(tmp_path):
    """Three shapes evaluation prompts written as GenEval's evaluation_metadata.jsonl."""
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("".join(json.dumps(spec.to_metadata()) + "\n" for spec in evaluation_prompts()[:3]))
    return path


def run(server, metadata, output, *extra):
    argv = ["--metadata", str(metadata), "--output", str(output), "--url", server.grpc_url]
    return geneval_main([*argv, "--mode", "vhs", "-n", "2", "--samples", "2", "--concurrency", "3", *extra])


def test_writes_geneval_layout_that_the_shapes_evaluator_scores(server, metadata, tmp_path):
    assert run(server, metadata, tmp_path / "out") == 0
    folder = tmp_path / "out" / "vhs-n2"
    lines = metadata.read_text().splitlines()
    for index, line in enumerate(lines):
        assert (folder / f"{index:05d}" / "metadata.jsonl").read_text() == line + "\n"
        assert sorted(p.name for p in (folder / f"{index:05d}" / "samples").iterdir()) == [
            "0000.png",
            "0001.png",
        ]
    # Sample k of prompt i has seed i * samples + k: the same image a direct request gives.
    prompt = json.loads(lines[2])["prompt"]
    with VHSClient(server.grpc_url) as client:
        expected = client.generate(prompt, 2, 2 * 2 + 1, "vhs").image
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "00002" / "samples" / "0001.png")), expected)
    assert len((folder / "vhs_scores.jsonl").read_text().splitlines()) == 6
    assert sum(score_folder(folder)["images"].values()) == 6


def test_resume_generates_only_missing_samples(server, metadata, tmp_path, capsys):
    assert run(server, metadata, tmp_path / "out") == 0
    folder = tmp_path / "out" / "vhs-n2"
    kept = folder / "00000" / "samples" / "0000.png"
    kept_time = kept.stat().st_mtime_ns
    (folder / "00001" / "samples" / "0001.png").unlink()
    capsys.readouterr()
    assert run(server, metadata, tmp_path / "out") == 0
    assert "5 of 6 images already there, 1 to generate" in capsys.readouterr().out
    assert (folder / "00001" / "samples" / "0001.png").is_file()
    assert kept.stat().st_mtime_ns == kept_time
    assert len((folder / "vhs_scores.jsonl").read_text().splitlines()) == 7


def test_resume_with_other_settings_is_refused(server, metadata, tmp_path, capsys):
    assert run(server, metadata, tmp_path / "out") == 0
    assert run(server, metadata, tmp_path / "out", "--seed", "9") == 2
    assert "was made with other settings" in capsys.readouterr().err


def test_failed_prompts_are_reported_and_the_rest_is_written(server, tmp_path, capsys):
    metadata = tmp_path / "evaluation_metadata.jsonl"
    lines = [{"prompt": "a photo of a red circle"}, {"prompt": "circle " * 40}]  # too long for the preset
    metadata.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert run(server, metadata, tmp_path / "out") == 1
    assert "prompt 1 sample 0" in capsys.readouterr().err
    assert len(list((tmp_path / "out" / "vhs-n2").glob("*/samples/*.png"))) == 2
