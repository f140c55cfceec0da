"""`vhs-client`: ask a running `vhs` server for the best of N images.

    vhs-client generate "a photo of a red circle" -n 4 --seed 0 --mode vhs -o out.png [--all]
    vhs-client generate "a photo of a red circle" --budget-ms 40     # the largest N that fits 40 ms

Prints every candidate's score, the selected index and the server's per-stage timings; `--all` also
writes `<output stem>_all.png`, a contact sheet of every candidate with its score.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from vhs import protocol as P
from vhs.modes import DEFAULT_MODE, mode_names

from .contact_sheet import contact_sheet
from .vhs_client import DEFAULT_URLS, PROTOCOLS, GenerationResult, VHSClient, VHSRequestError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhs-client", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate one prompt, best of N")
    generate.add_argument("prompt")
    generate.add_argument("-n", "--num-candidates", type=int, help="N (default: the server preset's)")
    generate.add_argument("--seed", type=int, help=f"default {P.DEFAULT_SEED}")
    generate.add_argument("--mode", choices=mode_names(), help=f"default {DEFAULT_MODE}")
    generate.add_argument(
        "--budget-ms",
        type=float,
        help="time budget in the server (ms): N becomes the largest, up to -n (default: the preset's "
        "max_candidates), whose predicted time fits",
    )
    generate.add_argument("-o", "--output", type=Path, default=Path("out.png"), help="selected image (PNG)")
    generate.add_argument(
        "--all", action="store_true", help="also decode every candidate and write <output stem>_all.png"
    )
    generate.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    generate.add_argument(
        "--url", help=f"host:port (default {DEFAULT_URLS['grpc']} for grpc, {DEFAULT_URLS['http']} for http)"
    )
    generate.add_argument("--model", default=P.ORCHESTRATOR_MODEL, help="name of the orchestrator model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with VHSClient(args.url, args.protocol, args.model) as client:
        try:
            result = client.generate(
                args.prompt, args.num_candidates, args.seed, args.mode, args.all, args.budget_ms
            )
        except VHSRequestError as error:
            print(f"error: {error} (server {client.url}, {client.protocol})", file=sys.stderr)
            return 1
    print(format_result(result, args.budget_ms))
    Image.fromarray(result.image).save(args.output)
    print(f"wrote {args.output} ({result.image.shape[1]}x{result.image.shape[0]})")
    if args.all:
        sheet_path = args.output.with_name(f"{args.output.stem}_all.png")
        contact_sheet(result.candidate_images, result.scores, result.selected).save(sheet_path)
        print(f"wrote {sheet_path} ({len(result.candidate_images)} candidates)")
    return 0


def format_result(result: GenerationResult, budget_ms: float | None = None) -> str:
    """Scores with the selected candidate marked, then the timing breakdown, as a plain-text table;
    with `budget_ms`, first the N the budget allowed and its predicted time."""
    lines = []
    if budget_ms is not None:
        verdict = "fits" if result.predicted_ms <= budget_ms else "does not fit even at N = 1"
        lines += [
            f"budget {budget_ms:.2f} ms: N = {result.num_candidates_used}, "
            f"predicted {result.predicted_ms:.2f} ms ({verdict})",
            "",
        ]
    if len(result.scores):
        lines.append("candidate  P(yes)")
        for index, score in enumerate(result.scores):
            lines.append(f"{index:>9}  {score:.4f}" + ("  <- selected" if index == result.selected else ""))
    else:
        lines.append(f"candidate {result.selected} selected (no verifier in this mode)")
    stage_width = max([len(stage) for stage in result.timings_ms] + [len("round trip (client)")])
    lines += ["", f"{'stage':<{stage_width}}  {'ms':>9}"]
    lines += [f"{stage:<{stage_width}}  {ms:>9.2f}" for stage, ms in result.timings_ms.items()]
    lines.append(f"{'sum of stages':<{stage_width}}  {sum(result.timings_ms.values()):>9.2f}")
    if math.isfinite(result.request_ms):
        lines.append(f"{'request (server)':<{stage_width}}  {result.request_ms:>9.2f}")
    else:  # a request that also decoded every candidate is not timed (REQUEST_MS is NaN)
        lines.append(f"{'request (server)':<{stage_width}}  {'-':>9}  (not timed: candidates decoded)")
    lines.append(f"{'round trip (client)':<{stage_width}}  {result.round_trip_ms:>9.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
