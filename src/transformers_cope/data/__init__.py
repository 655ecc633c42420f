"""Synthetic data: textured videos with known motion (render.py) and the motion QA benchmark built on them."""
