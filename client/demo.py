"""`make demo`: start the real Triton server on an exported repository, generate one prompt in `vhs`
and `clip` mode, write the images and a picture of every candidate, print a side-by-side timing table.

    python -m vhs.client.demo --model-repository build/shapes/model_repository --output out/demo
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from vhs.launcher.server import TritonServer
from vhs.shapes import evaluate, parse_prompt

from .contact_sheet import caption_font, contact_sheet
from .vhs_client import GenerationResult, VHSClient

MODES = ("vhs", "clip")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path("out/demo"))
    parser.add_argument("--prompt", default="a photo of two circles")
    parser.add_argument("-n", "--num-candidates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per mode (median reported)")
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    with TritonServer(args.model_repository, build_dir=args.build_dir) as server:
        print(f"tritonserver ready in {server.startup_s:.1f} s (gRPC {server.grpc_url})")
        with VHSClient(server.grpc_url) as client:
            sheets, timed = {}, {}
            for mode in MODES:
                shown = client.generate(
                    args.prompt, args.num_candidates, args.seed, mode, return_candidates=True
                )
                Image.fromarray(shown.image).save(args.output / f"{mode}.png")
                sheets[mode] = contact_sheet(
                    shown.candidate_images,
                    shown.scores,
                    shown.selected,
                    verdicts=shapes_verdicts(args.prompt, shown),
                )
                timed[mode] = [
                    client.generate(args.prompt, args.num_candidates, args.seed, mode)
                    for _ in range(args.repeats)
                ]
    figure = side_by_side(sheets, args.prompt)
    figure.save(args.output / "demo.png")
    print(f'prompt: "{args.prompt}", N = {args.num_candidates}, seed = {args.seed}')
    print(timing_table(timed))
    print(f"wrote {', '.join(str(args.output / f'{m}.png') for m in MODES)} and {args.output / 'demo.png'}")
    return 0


def shapes_verdicts(prompt: str, result: GenerationResult) -> list[bool] | None:
    """The shapes evaluator's verdict on every candidate when the prompt is one of the shapes world's
    (GenEval's phrasing), else None: the demo shows whether the verifier picked a right one."""
    try:
        spec = parse_prompt(prompt)
    except ValueError:
        return None
    return [evaluate(image, spec) for image in result.candidate_images]


def timing_table(timed: dict[str, list[GenerationResult]]) -> str:
    """Median server-side ms per stage for each mode, the totals, and the vhs/clip ratio."""
    stages = list(dict.fromkeys(stage for results in timed.values() for stage in results[0].timings_ms))
    medians = {
        mode: {stage: statistics.median(r.timings_ms.get(stage, 0.0) for r in results) for stage in stages}
        for mode, results in timed.items()
    }
    totals = {
        mode: statistics.median(sum(r.timings_ms.values()) for r in results)
        for mode, results in timed.items()
    }
    round_trips = {
        mode: statistics.median(r.round_trip_ms for r in results) for mode, results in timed.items()
    }
    width = max(len(s) for s in [*stages, "round trip (client)"])
    lines = [f"{'stage (median ms)':<{width}}" + "".join(f"{mode:>10}" for mode in timed)]
    lines += [f"{stage:<{width}}" + "".join(f"{medians[m][stage]:>10.2f}" for m in timed) for stage in stages]
    lines.append(f"{'sum of stages':<{width}}" + "".join(f"{totals[m]:>10.2f}" for m in timed))
    lines.append(f"{'round trip (client)':<{width}}" + "".join(f"{round_trips[m]:>10.2f}" for m in timed))
    lines.append(
        f"vhs / clip time: {totals['vhs'] / totals['clip']:.2f} (stages), "
        f"{round_trips['vhs'] / round_trips['clip']:.2f} (round trip)"
    )
    return "\n".join(lines)


def side_by_side(sheets: dict[str, Image.Image], prompt: str) -> Image.Image:
    """Stack the per-mode contact sheets under a title line each."""
    title_height = 22
    width = max(sheet.width for sheet in sheets.values())
    height = sum(sheet.height + title_height for sheet in sheets.values())
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    top = 0
    for mode, sheet in sheets.items():
        draw.text((4, top + 4), f'{mode} verifier: "{prompt}"', fill="black", font=caption_font())
        figure.paste(sheet, (0, top + title_height))
        top += sheet.height + title_height
    return figure


if __name__ == "__main__":
    sys.exit(main())
