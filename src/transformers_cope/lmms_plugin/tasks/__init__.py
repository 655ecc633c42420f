"""lmms-eval task definitions shipped with transformers-cope (YAML + JSONL, no Hub download)."""
