"""Prompts of GenEval's six task types, as structured specs and as text.

A `PromptSpec` is GenEval's per-prompt metadata: a task tag, the objects the image must include
and (for counting) the objects it must not. `to_metadata` / `from_metadata` convert to and from
GenEval's JSON; `prompt_text` / `parse_prompt` convert to and from GenEval's phrasing:

    single_object  a photo of a circle
    two_object     a photo of a circle and a square
    counting       a photo of three triangles
    colors         a photo of a blue square
    position       a photo of a circle left of a square
    color_attr     a photo of a red circle and a green square

In a position prompt the object named first is the second include clause, placed relative to
the first: "a circle left of a square" is include [square, circle with position ("left of", 0)].
"""

import re
from dataclasses import dataclass

from vhs.shapes.world import COLORS, SHAPES

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
PLURALS = {shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES}
COUNTING_NUMBERS = (2, 3, 4)
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
)  # fmt: skip


@dataclass(frozen=True)
class ObjectClause:
    """One include/exclude clause of GenEval's metadata: `count` objects of `shape`.

    color: the colour they must have, or None for any colour.
    position: (relation, index of the include clause they are placed relative to), or None.
    """

    shape: str
    count: int = 1
    color: str | None = None
    position: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"class={self.shape!r} is not one of {SHAPES}")
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count={self.count!r} must be an integer >= 1")
        if self.color is not None and self.color not in COLORS:
            raise ValueError(f"color={self.color!r} is not one of {tuple(COLORS)}")
        if self.position is not None:
            relation, target = self.position
            if relation not in RELATIONS:
                raise ValueError(f"position relation={relation!r} is not one of {RELATIONS}")
            if not isinstance(target, int) or target < 0:
                raise ValueError(f"position target={target!r} must be an include index >= 0")

    def to_metadata(self) -> dict:
        """GenEval's JSON form: {"class", "count"[, "color"][, "position": [relation, index]]}."""
        clause = {"class": self.shape, "count": self.count}
        if self.color is not None:
            clause["color"] = self.color
        if self.position is not None:
            clause["position"] = list(self.position)
        return clause

    @classmethod
    def from_metadata(cls, clause: dict) -> "ObjectClause":
        """Inverse of `to_metadata`; raises ValueError naming the bad field."""
        if not isinstance(clause, dict) or "class" not in clause:
            raise ValueError(f"clause {clause!r} must be an object with a 'class' field")
        position = clause.get("position")
        if position is not None:
            if not isinstance(position, list | tuple) or len(position) != 2:
                raise ValueError(f"position={position!r} must be [relation, include index]")
            position = (position[0], position[1])
        return cls(clause["class"], clause.get("count", 1), clause.get("color"), position)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt as GenEval's metadata: task tag, include clauses, exclude clauses."""

    tag: str
    include: tuple[ObjectClause, ...]
    exclude: tuple[ObjectClause, ...] = ()

    def __post_init__(self) -> None:
        if self.tag not in TASKS:
            raise ValueError(f"tag={self.tag!r} is not one of {TASKS}")
        for index, clause in enumerate(self.include):
            if clause.position is not None and clause.position[1] >= index:
                raise ValueError(
                    f"include[{index}] position target={clause.position[1]} must name an earlier "
                    f"include clause (0..{index - 1})"
                )

    @classmethod
    def single_object(cls, shape: str) -> "PromptSpec":
        """The spec of "a photo of a <shape>"."""
        return cls("single_object", (ObjectClause(shape),))

    @classmethod
    def two_object(cls, first: str, second: str) -> "PromptSpec":
        """The spec of "a photo of a <first> and a <second>"."""
        return cls("two_object", (ObjectClause(first), ObjectClause(second)))

    @classmethod
    def counting(cls, shape: str, count: int) -> "PromptSpec":
        """The spec of "a photo of <count> <shape>s": at least `count`, and not `count + 1` (exact)."""
        return cls("counting", (ObjectClause(shape, count),), (ObjectClause(shape, count + 1),))

    @classmethod
    def colors(cls, color: str, shape: str) -> "PromptSpec":
        """The spec of "a photo of a <color> <shape>"."""
        return cls("colors", (ObjectClause(shape, color=color),))

    @classmethod
    def position(cls, shape: str, relation: str, target_shape: str) -> "PromptSpec":
        """The spec of "a photo of a <shape> <relation> a <target_shape>"."""
        return cls("position", (ObjectClause(target_shape), ObjectClause(shape, position=(relation, 0))))

    @classmethod
    def color_attr(cls, first: tuple[str, str], second: tuple[str, str]) -> "PromptSpec":
        """The spec of "a photo of a <color> <shape> and a <color> <shape>"; first, second: (color, shape)."""
        return cls(
            "color_attr",
            (ObjectClause(first[1], color=first[0]), ObjectClause(second[1], color=second[0])),
        )

    def to_metadata(self) -> dict:
        """GenEval's metadata.jsonl record: {"tag", "include"[, "exclude"], "prompt"}."""
        metadata = {"tag": self.tag, "include": [clause.to_metadata() for clause in self.include]}
        if self.exclude:
            metadata["exclude"] = [clause.to_metadata() for clause in self.exclude]
        metadata["prompt"] = prompt_text(self)
        return metadata

    @classmethod
    def from_metadata(cls, metadata: dict) -> "PromptSpec":
        """Inverse of `to_metadata` ("prompt" is not needed); raises ValueError naming the bad field."""
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a JSON object, got {metadata!r}")
        include = metadata.get("include")
        if not isinstance(include, list) or not include:
            raise ValueError(f"include={include!r} must be a non-empty list of clauses")
        exclude = metadata.get("exclude", [])
        if not isinstance(exclude, list):
            raise ValueError(f"exclude={exclude!r} must be a list of clauses")
        return cls(
            metadata.get("tag"),
            tuple(ObjectClause.from_metadata(clause) for clause in include),
            tuple(ObjectClause.from_metadata(clause) for clause in exclude),
        )


def noun_phrase(shape: str, count: int = 1, color: str | None = None) -> str:
    """English for `count` objects: "a red circle", "an orange square", "two crosses", "three blue rings"."""
    words = f"{color} {shape}" if color else shape
    if count == 1:
        return ("an " if words[0] in "aeiou" else "a ") + words
    plural = f"{color} {PLURALS[shape]}" if color else PLURALS[shape]
    number = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    return f"{number} {plural}"


def _clause_phrase(clause: ObjectClause) -> str:
    return noun_phrase(clause.shape, clause.count, clause.color)


def prompt_text(spec: PromptSpec) -> str:
    """GenEval's phrasing of a spec; raises ValueError if the spec does not fit its task's template."""
    if spec.tag == "position" and len(spec.include) == 2 and spec.include[1].position is not None:
        target, placed = spec.include
        text = f"a photo of {_clause_phrase(placed)} {placed.position[0]} {_clause_phrase(target)}"
    else:
        text = "a photo of " + " and ".join(_clause_phrase(clause) for clause in spec.include)
    # A spec fits its template exactly when its text reads back as the same spec.
    try:
        fits = parse_prompt(text) == spec
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{spec} does not fit the {spec.tag!r} prompt template")
    return text


_SHAPE = "|".join(SHAPES)
_COLOR = "|".join(COLORS)
_PLURAL = "|".join(PLURALS.values())
_NUMBER = "|".join(NUMBER_WORDS[n] for n in COUNTING_NUMBERS)
_RELATION = "|".join(RELATIONS)
_SINGULAR = {plural: shape for shape, plural in PLURALS.items()}

# (pattern after "a photo of ", builder from the captured words)
_PROMPT_PATTERNS = (
    (rf"an? ({_SHAPE})", PromptSpec.single_object),
    (rf"an? ({_SHAPE}) and an? ({_SHAPE})", PromptSpec.two_object),
    (rf"({_NUMBER}) ({_PLURAL})",
     lambda number, plural: PromptSpec.counting(_SINGULAR[plural], NUMBER_WORDS.index(number))),
    (rf"an? ({_COLOR}) ({_SHAPE})", PromptSpec.colors),
    (rf"an? ({_SHAPE}) ({_RELATION}) an? ({_SHAPE})", PromptSpec.position),
    (rf"an? ({_COLOR}) ({_SHAPE}) and an? ({_COLOR}) ({_SHAPE})",
     lambda color_a, shape_a, color_b, shape_b: PromptSpec.color_attr((color_a, shape_a),
                                                                       (color_b, shape_b))),
)  # fmt: skip


def parse_prompt(text: str) -> PromptSpec:
    """The spec of a prompt in GenEval's phrasing (any case, "a"/"an" not checked).

    Raises ValueError when the text fits none of the six templates or names two equal shapes.
    """
    words = " ".join(text.lower().split())
    for pattern, build in _PROMPT_PATTERNS:
        match = re.fullmatch("a photo of " + pattern, words)
        if match:
            spec = build(*match.groups())
            if len({clause.shape for clause in spec.include}) < len(spec.include):
                raise ValueError(f"prompt {text!r}: the two objects must be different shapes")
            return spec
    raise ValueError(
        f"prompt {text!r} fits none of GenEval's templates, e.g. 'a photo of a circle', "
        f"'a photo of three triangles', 'a photo of a red circle and a green square', "
        f"'a photo of a circle left of a square'; shapes: {SHAPES}, colours: {tuple(COLORS)}"
    )
