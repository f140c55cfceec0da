"""A contact sheet of all candidates of one request: each tile captioned with its index and score,
the selected one framed (and its caption green)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_TILE_PIXELS = 128  # small candidates are enlarged (nearest neighbour) so the caption fits
CAPTION_PIXELS = 22
GAP_PIXELS = 6
FRAME_PIXELS = 4
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
SELECTED_COLOR = (0, 170, 60)
# Pillow's default font (Aileron) at its default 10 px draws a space 2 px wide, about the gap
# between two letters: "a photo of two circles" read "a photoof twocircles". At 13 px a space
# leaves 4 to 5 px, twice a letter gap.
FONT_PIXELS = 13


def caption_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font of the captions and titles (Pillow's own, so nothing is looked up on the system)."""
    return ImageFont.load_default(size=FONT_PIXELS)


def contact_sheet(
    candidate_images: np.ndarray,
    scores: np.ndarray,
    selected: int,
    columns: int | None = None,
    verdicts: list[bool] | None = None,
) -> Image.Image:
    """Lay out candidates in a grid with their scores; the selected candidate gets a green frame.

    candidate_images: uint8 [N, H, W, 3]. scores: [N] (P(yes)), or [0] from a mode without a verifier
    (tiles are captioned without a score). selected: index in [0, N).
    columns: tiles per row, default ceil(sqrt(N)). verdicts: an evaluator's pass/fail per candidate,
    written under its score, or None.
    """
    if candidate_images.ndim != 4 or candidate_images.shape[-1] != 3 or candidate_images.dtype != np.uint8:
        raise ValueError(
            f"candidate_images must be uint8 [N, H, W, 3], got {candidate_images.dtype} "
            f"{list(candidate_images.shape)}"
        )
    count, height, width, _ = candidate_images.shape
    if count == 0:
        raise ValueError("candidate_images holds no candidates (N = 0): request them with return_candidates")
    if len(scores) not in (0, count):
        raise ValueError(f"scores must have one value per candidate ({count}) or none, got {len(scores)}")
    if verdicts is not None and len(verdicts) != count:
        raise ValueError(f"verdicts must have one value per candidate ({count}), got {len(verdicts)}")
    if not 0 <= selected < count:
        raise ValueError(f"selected must be in [0, {count - 1}], got {selected}")
    scale = max(1, math.ceil(MIN_TILE_PIXELS / min(height, width)))
    tile_width, tile_height = width * scale, height * scale
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cell_width = tile_width + 2 * FRAME_PIXELS + GAP_PIXELS
    cell_height = tile_height + 2 * FRAME_PIXELS + CAPTION_PIXELS + GAP_PIXELS
    sheet = Image.new("RGB", (columns * cell_width + GAP_PIXELS, rows * cell_height + GAP_PIXELS), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = caption_font()
    for index, image in enumerate(candidate_images):
        left = GAP_PIXELS + (index % columns) * cell_width
        top = GAP_PIXELS + (index // columns) * cell_height
        if index == selected:
            frame_right = left + tile_width + 2 * FRAME_PIXELS - 1
            frame_bottom = top + tile_height + 2 * FRAME_PIXELS - 1
            draw.rectangle((left, top, frame_right, frame_bottom), fill=SELECTED_COLOR)
        tile = Image.fromarray(image).resize((tile_width, tile_height), Image.NEAREST)
        sheet.paste(tile, (left + FRAME_PIXELS, top + FRAME_PIXELS))
        score = f"  {float(scores[index]):.3f}" if len(scores) else ""
        verdict = "" if verdicts is None else ("  pass" if verdicts[index] else "  fail")
        caption = f"#{index}{score}{verdict}"  # the selected one is framed and captioned in green
        draw.text(
            (left + FRAME_PIXELS, top + tile_height + 2 * FRAME_PIXELS + 4),
            caption,
            fill=SELECTED_COLOR if index == selected else TEXT_COLOR,
            font=font,
        )
    return sheet
