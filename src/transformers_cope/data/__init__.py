"""Synthetic data: textured videos with known motion (render.py) and the motion QA benchmark built on them."""

from .render import Scene, Sprite, ground_truth, ground_truth_flow, make_textured_video, render_video
from .synthetic_qa import SyntheticMotionQA, generate_motion_qa, load_motion_qa, record_scene, to_messages

__all__ = [
    "Scene",
    "Sprite",
    "ground_truth",
    "ground_truth_flow",
    "make_textured_video",
    "render_video",
    "SyntheticMotionQA",
    "generate_motion_qa",
    "load_motion_qa",
    "record_scene",
    "to_messages",
]
