"""`vhs-geneval`: every prompt of GenEval's `evaluation_metadata.jsonl` through a running `vhs`
server, written in GenEval's folder layout so that GenEval's own evaluator (or `make eval-shapes`
for the shapes world) scores it.

    vhs-geneval --metadata geneval/prompts/evaluation_metadata.jsonl --output out/geneval \
        --mode vhs clip --num-candidates 4 --samples 4 --concurrency 4

One run folder per (mode, N), `<output>/<mode>-n<N>/`:

    00000/metadata.jsonl        the prompt's line of evaluation_metadata.jsonl, verbatim
    00000/samples/0000.png      sample k of prompt i, generated with seed = --seed + i * samples + k
    run.json                    the run's settings (a rerun with other settings is refused)
    vhs_scores.jsonl            per sample: seed, every candidate's score, the selected index, latency

Resumable: a sample whose PNG exists is not asked for again (PNGs are written to a temporary name
and renamed, so an interrupted run leaves no half-written image). At most `--concurrency` requests
are in flight; a failed request is reported and the run goes on (rerun to fill the gaps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from vhs.modes import DEFAULT_MODE, MODES, mode_names

from .vhs_client import DEFAULT_URLS, VHSClient, VHSRequestError

RUN_FILE = "run.json"
SCORES_FILE = "vhs_scores.jsonl"


@dataclass(frozen=True)
class RunSettings:
    """What a run folder was made with; a resumed run must match it."""

    metadata_sha256: str
    mode: str
    num_candidates: int
    samples: int
    seed: int


@dataclass(frozen=True)
class Sample:
    index: int  # the prompt's line in evaluation_metadata.jsonl
    sample: int
    prompt: str
    seed: int
    path: Path


def read_metadata(path: Path) -> list[tuple[str, dict]]:
    """evaluation_metadata.jsonl -> [(the line verbatim, its JSON)]; raises ValueError naming the line."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            metadata = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(metadata, dict) or not isinstance(metadata.get("prompt"), str):
            raise ValueError(f"{path}:{number}: expected an object with a 'prompt' string")
        entries.append((line, metadata))
    if not entries:
        raise ValueError(f"{path}: no prompts")
    return entries


def prepare_run(run: Path, entries: list[tuple[str, dict]], settings: RunSettings) -> list[Sample]:
    """Create (or check, when resuming) the run folder and every prompt's metadata; returns the
    samples still missing."""
    run.mkdir(parents=True, exist_ok=True)
    settings_path = run / RUN_FILE
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        if previous != asdict(settings):
            raise ValueError(
                f"{run} was made with other settings ({previous}); use another --output or remove it"
            )
    else:
        settings_path.write_text(json.dumps(asdict(settings), indent=2) + "\n")
    missing = []
    for index, (line, metadata) in enumerate(entries):
        folder = run / f"{index:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        (folder / "metadata.jsonl").write_text(line + "\n")
        for sample in range(settings.samples):
            path = folder / "samples" / f"{sample:04d}.png"
            if not path.is_file():
                seed = settings.seed + index * settings.samples + sample
                missing.append(Sample(index, sample, metadata["prompt"], seed, path))
    return missing


def generate_samples(
    client: VHSClient, run: Path, samples: list[Sample], settings: RunSettings, concurrency: int
) -> list[str]:
    """Generate `samples` with at most `concurrency` requests in flight; returns the error messages."""
    lock = threading.Lock()
    errors = []

    def generate(sample: Sample) -> None:
        result = client.generate(sample.prompt, settings.num_candidates, sample.seed, settings.mode)
        partial = sample.path.with_suffix(".png.tmp")
        Image.fromarray(result.image).save(partial, format="PNG")
        os.replace(partial, sample.path)
        record = {
            "index": sample.index,
            "sample": sample.sample,
            "seed": sample.seed,
            "scores": [round(float(score), 6) for score in result.scores],
            "selected": result.selected,
            "round_trip_ms": round(result.round_trip_ms, 2),
        }
        with lock, (run / SCORES_FILE).open("a") as scores:
            scores.write(json.dumps(record) + "\n")

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vhs-geneval") as pool:
        futures = {pool.submit(generate, sample): sample for sample in samples}
        with tqdm(total=len(samples), desc=run.name, unit="image") as progress:
            for future in as_completed(futures):
                try:
                    future.result()
                except VHSRequestError as error:
                    sample = futures[future]
                    errors.append(f"prompt {sample.index} sample {sample.sample}: {error}")
                progress.update()
    return errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhs-geneval", description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, required=True, help="GenEval's evaluation_metadata.jsonl")
    parser.add_argument("--output", type=Path, required=True, help="one run folder per mode and N goes here")
    parser.add_argument("--mode", nargs="+", choices=mode_names(), default=[DEFAULT_MODE])
    parser.add_argument("-n", "--num-candidates", nargs="+", type=int, default=[4], help="N, one run each")
    parser.add_argument("--samples", type=int, default=4, help="images per prompt (GenEval: 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of prompt 0's sample 0")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--url", default=DEFAULT_URLS["grpc"], help="gRPC host:port of the server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.samples < 1 or args.concurrency < 1:
        print("vhs-geneval: error: --samples and --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        entries = read_metadata(args.metadata)
    except (OSError, ValueError) as error:
        print(f"vhs-geneval: error: {error}", file=sys.stderr)
        return 2
    metadata_sha256 = hashlib.sha256(args.metadata.read_bytes()).hexdigest()
    # A mode without a verifier answers with candidate 0 whatever N is: one run, at N = 1.
    runs = sorted(
        {(mode, n if MODES[mode].verifies else 1) for mode in args.mode for n in args.num_candidates}
    )
    failed = 0
    with VHSClient(args.url) as client:
        for mode, num_candidates in runs:
            run = args.output / f"{mode}-n{num_candidates}"
            settings = RunSettings(metadata_sha256, mode, num_candidates, args.samples, args.seed)
            try:
                missing = prepare_run(run, entries, settings)
            except ValueError as error:
                print(f"vhs-geneval: error: {error}", file=sys.stderr)
                return 2
            total = len(entries) * args.samples
            print(
                f"{run}: {total - len(missing)} of {total} images already there, {len(missing)} to generate"
            )
            errors = generate_samples(client, run, missing, settings, args.concurrency)
            for message in errors[:10]:
                print(f"vhs-geneval: {message}", file=sys.stderr)
            failed += len(errors)
    if failed:
        print(f"vhs-geneval: {failed} images failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
