"""Models of the lmms-eval plugin (the legacy `LMMS_EVAL_PLUGINS` protocol reads AVAILABLE_MODELS)."""

AVAILABLE_MODELS = {"cope_videolm": "CoPEVideoLMEval"}
