"""`vhs-build-preset`: build the presets made in code into the preset cache.

    vhs-build-preset tiny-random              # or: make preset PRESET=tiny-random
    vhs-build-preset tiny-random proportions

`tiny-random` (tiny configs, for the tests) and `proportions` (the published compute mix, for
`make bench`) are the published classes with seeded random weights and tokenizers learned on a
corpus, built here and saved into `$VHS_CACHE_DIR/presets/<name>-v<version>` (`VHS_CACHE_DIR`
defaults to `./build`). Loading a preset never builds or writes anything: an unbuilt one is an
error naming this command (`vhs.presets.preset_folder`). `shapes` ships in the package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import Preset, proportions, tiny_random
from .builder import cache_folder, ensure_built

# name -> (version of its recipe, the builder); a changed recipe bumps its version, so a stale
# build is never read.
CODE_PRESETS: dict[str, tuple[int, Callable[[], Preset]]] = {
    "tiny-random": (tiny_random.VERSION, tiny_random.build_tiny_random),
    "proportions": (proportions.VERSION, proportions.build_proportions),
}


def built_folder(name: str) -> Path:
    """The folder preset `name` is built into (whether it is built yet or not)."""
    return cache_folder(name, CODE_PRESETS[name][0])


def build(name: str) -> Path:
    """Build preset `name` unless it is built already; its folder."""
    version, builder = CODE_PRESETS[name]
    return ensure_built(name, version, builder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vhs-build-preset", description=__doc__.splitlines()[0])
    parser.add_argument(
        "presets",
        nargs="+",
        choices=sorted(CODE_PRESETS),
        metavar="PRESET",
        help=f"one of {', '.join(sorted(CODE_PRESETS))}",
    )
    for name in parser.parse_args(argv).presets:
        print(f"{name}: {build(name)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
