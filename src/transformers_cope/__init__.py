"""CoPE-VideoLM for Hugging Face Transformers."""
