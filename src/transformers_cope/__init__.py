"""CoPE-VideoLM for Hugging Face Transformers.

Importing this package registers the CoPE-VideoLM config, model, processor and video processor with the
Transformers Auto classes (and the `video-question-answering` pipeline), so that `AutoModelForImageTextToText`,
`AutoProcessor`, `AutoVideoProcessor` and `pipeline(...)` find them. Each class is also registered for its Auto
class, so a saved folder carries its code and `auto_map` and loads with `trust_remote_code=True` where this
package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoProcessor,
    AutoVideoProcessor,
)

from .codec import (
    CodecPrimitives,
    GOPIterator,
    GOPPrimitives,
    MotionVectorFrame,
    extract_primitives,
    iter_live_primitives,
    iter_primitives,
    read_motion_vectors,
    transcode,
)
from .configuration_cope import CoPEDeltaConfig, CoPEVideoLMConfig, count_video_tokens
from .embedded import DEFAULT_MODEL_DIR, load_default_model
from .errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoWarning,
    UnsupportedVideoError,
    VideoDecodeError,
    VideoTooLargeError,
)
from .modeling_cope import (
    CoPEDeltaEncoder,
    CoPEVideoLMForConditionalGeneration,
    CoPEVideoLMModel,
    CoPEVideoLMPreTrainedModel,
)
from .pipeline_cope import VideoQuestionAnsweringPipeline, register_pipeline
from .processing_cope import CoPEVideoLMProcessor, add_cope_special_tokens
from .session_cope import CoPEVideoSession
from .video_processing_cope import CoPEVideoProcessor

__version__ = "0.1.0"


def _register() -> None:
    """Register with the Auto classes (in-process) and for remote code (what `save_pretrained` writes)."""
    AutoConfig.register(CoPEVideoLMConfig.model_type, CoPEVideoLMConfig, exist_ok=True)
    AutoConfig.register(CoPEDeltaConfig.model_type, CoPEDeltaConfig, exist_ok=True)
    AutoModel.register(CoPEVideoLMConfig, CoPEVideoLMModel, exist_ok=True)
    AutoModel.register(CoPEDeltaConfig, CoPEDeltaEncoder, exist_ok=True)
    AutoModelForImageTextToText.register(CoPEVideoLMConfig, CoPEVideoLMForConditionalGeneration, exist_ok=True)
    AutoModelForMultimodalLM.register(CoPEVideoLMConfig, CoPEVideoLMForConditionalGeneration, exist_ok=True)
    AutoVideoProcessor.register(CoPEVideoLMConfig, CoPEVideoProcessor, exist_ok=True)
    AutoProcessor.register(CoPEVideoLMConfig, CoPEVideoLMProcessor, exist_ok=True)

    CoPEVideoLMConfig.register_for_auto_class()
    CoPEVideoLMForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    CoPEVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    CoPEVideoLMProcessor.register_for_auto_class("AutoProcessor")
    register_pipeline()


_register()

__all__ = [
    "CoPEDeltaConfig",
    "CoPEDeltaEncoder",
    "CoPEVideoLMConfig",
    "CoPEVideoLMForConditionalGeneration",
    "CoPEVideoLMModel",
    "CoPEVideoLMPreTrainedModel",
    "CoPEVideoLMProcessor",
    "CoPEVideoProcessor",
    "CoPEVideoSession",
    "CodecPrimitives",
    "GOPIterator",
    "GOPPrimitives",
    "DEFAULT_MODEL_DIR",
    "CorruptVideoError",
    "MotionVectorFrame",
    "NoVideoStreamError",
    "NotAVideoError",
    "TruncatedVideoWarning",
    "UnsupportedVideoError",
    "VideoDecodeError",
    "VideoQuestionAnsweringPipeline",
    "VideoTooLargeError",
    "add_cope_special_tokens",
    "count_video_tokens",
    "extract_primitives",
    "iter_live_primitives",
    "iter_primitives",
    "load_default_model",
    "read_motion_vectors",
    "transcode",
]
