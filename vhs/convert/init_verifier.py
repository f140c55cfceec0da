"""`vhs-init-verifier`: a fresh verifier folder for any SANA-Sprint checkpoint.

    vhs-init-verifier --generator Sana_Sprint_1.6B_1024px_diffusers --llm Qwen2.5-0.5B-Instruct \
        --output verifier --preset .

Writes `<output>/tokenizer/` (the LLM's own tokenizer and chat template), `<output>/llm/` (the LLM,
in its own dtype) and `<output>/connector/`: LLaVA's `mlp2x_gelu` sized from the generator's config
(DiT width -> LLM width), freshly initialised, with identity input statistics (mean 0, variance 1)
for training to replace. `--latent` adds `latent_connector/` (latent channels -> LLM width) and
`latent_llm/`, `--clip-vision FOLDER` adds that CLIP vision tower, its `clip_connector/` and
`clip_llm/`: each verifier fine-tunes its own copy of the LLM. With `--preset DIR`,
`DIR/preset.json` points at the generator and the new verifier with SANA-Sprint's settings (its
default complex_human_instruction included). The generator must be the published SANA-Sprint 1.6B
architecture (checked on its config files, naming the field that differs) unless
`--allow-architecture-mismatch` is given, which names the preset `sana-sprint-custom`.
Nothing is downloaded unless a path is a hub id and the machine is online.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import SanaTransformer2DModel
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel

from ..presets.folders import check_generator_folder
from ..presets.sana_sprint import (
    CUSTOM_NAME,
    NAME,
    check_published_architecture,
    sana_sprint_config,
    write_preset_json,
)
from ..prompting import PromptTokenizer
from ..verifier import MLPConnector


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhs-init-verifier", description=__doc__.splitlines()[0])
    parser.add_argument("--generator", type=Path, required=True, help="a SanaSprintPipeline folder")
    parser.add_argument(
        "--llm", required=True, help="a Qwen2ForCausalLM folder (with its tokenizer) or hub id"
    )
    parser.add_argument("--output", type=Path, required=True, help="the verifier folder to write")
    parser.add_argument("--clip-vision", help="a CLIP vision tower (folder or hub id) for the clip baseline")
    parser.add_argument("--latent", action="store_true", help="add the AE-latent baseline's connector")
    parser.add_argument("--preset", type=Path, help="also write preset.json into this folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the connectors' initialisation")
    parser.add_argument(
        "--allow-architecture-mismatch",
        action="store_true",
        help="accept a generator that is not the published SANA-Sprint 1.6B architecture (tiny test "
        "weights, a retrained DiT): the preset is then named 'sana-sprint-custom', not 'sana-sprint'",
    )
    return parser


def init_verifier(
    generator: Path,
    llm: str,
    output: Path,
    clip_vision: str | None = None,
    latent: bool = False,
    seed: int = 0,
) -> None:
    """Write a fresh verifier folder for `generator` (see the module docstring)."""
    check_generator_folder(str(generator))
    transformer = SanaTransformer2DModel.load_config(generator, subfolder="transformer")
    dit_width = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    llm_tokenizer = AutoTokenizer.from_pretrained(llm)
    if not llm_tokenizer.chat_template:
        raise ValueError(
            f"--llm {llm}: its tokenizer has no chat template, which renders the verifier question"
        )
    # Fails here, naming the word, if 'yes' or 'no' is not one token of this vocabulary.
    PromptTokenizer(AutoTokenizer.from_pretrained(generator, subfolder="tokenizer"), llm_tokenizer, 1, 1)
    language_model = AutoModelForCausalLM.from_pretrained(llm, dtype="auto")
    llm_width = language_model.config.hidden_size

    torch.manual_seed(seed)
    parts = {"connector": MLPConnector(dit_width, llm_width), "llm": language_model}
    if latent:
        parts["latent_connector"] = MLPConnector(transformer["in_channels"], llm_width)
        parts["latent_llm"] = language_model
    if clip_vision is not None:
        tower = CLIPVisionModel.from_pretrained(clip_vision)
        parts["clip_vision"] = tower
        parts["clip_connector"] = MLPConnector(tower.config.hidden_size, llm_width, normalize_input=False)
        parts["clip_llm"] = language_model

    output.mkdir(parents=True, exist_ok=True)
    llm_tokenizer.save_pretrained(output / "tokenizer")
    for name, part in parts.items():
        part.save_pretrained(output / name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.allow_architecture_mismatch:
            check_published_architecture(args.generator)
        init_verifier(args.generator, args.llm, args.output, args.clip_vision, args.latent, args.seed)
        print(f"verifier folder: {args.output}")
        if args.preset is not None:
            config = sana_sprint_config(
                os.path.relpath(args.generator.resolve(), args.preset.resolve()),
                os.path.relpath(args.output.resolve(), args.preset.resolve()),
                name=CUSTOM_NAME if args.allow_architecture_mismatch else NAME,
            )
            print(f"preset: {write_preset_json(args.preset, config)}")
    except (OSError, ValueError) as error:
        print(f"vhs-init-verifier: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
