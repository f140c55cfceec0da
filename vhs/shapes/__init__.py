"""Shapes world: a procedural GenEval-style benchmark with an exact automatic evaluator.

world        SHAPES, COLORS, Scene / SceneObject, render_scene
prompts      PromptSpec (GenEval's metadata), prompt_text, parse_prompt
prompt_sets  evaluation_prompts (fixed), sample_training_prompt (disjoint from them; its
             "train" / "validation" splits for the verifiers), validation_prompt_texts
scenes       random_scene, scene_for_prompt, near_miss_scene, sample_training_scene
detect       detect_objects: objects from pixels
rules        GenEval's pass/fail rules on objects
captions     caption_scene, caption_image; object_map (the same, one class per grid cell)
evaluate     evaluate, evaluate_with_reason, score_folder
robustness   the evaluator against verdicts by construction on perturbed renders
layout       GenEval's folder layout: write_prompt_folder, read_prompt_folders
cli          vhs-eval-shapes
"""

from vhs.shapes.captions import NUM_OBJECT_CLASSES, caption_image, caption_objects, caption_scene, object_map
from vhs.shapes.detect import detect_objects
from vhs.shapes.evaluate import evaluate, evaluate_with_reason, grade_folder, score_folder, summarize
from vhs.shapes.layout import LayoutError, PromptFolder, read_prompt_folders, write_prompt_folder
from vhs.shapes.prompt_sets import (
    EVALUATION_TASK_SIZES,
    evaluation_prompts,
    held_out_prompt_texts,
    sample_training_prompt,
    validation_prompt_texts,
)
from vhs.shapes.prompts import RELATIONS, TASKS, ObjectClause, PromptSpec, parse_prompt, prompt_text
from vhs.shapes.rules import DetectedObject, check_objects, ground_truth_objects, relative_position
from vhs.shapes.scenes import MISTAKES, near_miss_scene, random_scene, sample_training_scene, scene_for_prompt
from vhs.shapes.world import BACKGROUND, COLORS, SHAPES, Scene, SceneObject, render_scene

__all__ = [
    "BACKGROUND",
    "COLORS",
    "EVALUATION_TASK_SIZES",
    "MISTAKES",
    "RELATIONS",
    "SHAPES",
    "TASKS",
    "DetectedObject",
    "LayoutError",
    "ObjectClause",
    "PromptFolder",
    "PromptSpec",
    "Scene",
    "SceneObject",
    "NUM_OBJECT_CLASSES",
    "caption_image",
    "caption_objects",
    "caption_scene",
    "object_map",
    "check_objects",
    "detect_objects",
    "evaluate",
    "evaluate_with_reason",
    "evaluation_prompts",
    "grade_folder",
    "ground_truth_objects",
    "held_out_prompt_texts",
    "near_miss_scene",
    "parse_prompt",
    "prompt_text",
    "random_scene",
    "read_prompt_folders",
    "relative_position",
    "render_scene",
    "sample_training_prompt",
    "sample_training_scene",
    "validation_prompt_texts",
    "scene_for_prompt",
    "score_folder",
    "summarize",
    "write_prompt_folder",
]
