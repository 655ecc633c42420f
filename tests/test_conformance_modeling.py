"""Transformers' own `ModelTesterMixin`, `GenerationTesterMixin` and `ConfigTester` (from the installed release's
sdist, see tests/_upstream_tests.py) run against `CoPEVideoLMForConditionalGeneration` / `CoPEVideoLMModel`, the
`CoPEDeltaEncoder` and both configs, with tiny configs.

Every skip below names the upstream model whose test file skips the same test, and why it applies to CoPE."""

import unittest
from unittest.mock import patch

import pytest
import torch
from _upstream_tests import UPSTREAM_MISSING, UpstreamUnavailable, load
from transformers import Qwen2Config, SiglipVisionConfig

import transformers_cope  # noqa: F401  (registers the Auto classes the save/load tests use)
from transformers_cope.configuration_cope import CoPEDeltaConfig, CoPEVideoLMConfig
from transformers_cope.modeling_cope import CoPEDeltaEncoder, CoPEVideoLMForConditionalGeneration, CoPEVideoLMModel

try:
    modeling_common, configuration_common, generation_utils = load(
        "test_modeling_common", "test_configuration_common", "generation.test_utils"
    )
except UpstreamUnavailable as e:
    pytest.skip(f"Transformers' test mixins unavailable: {e}", allow_module_level=True)

ModelTesterMixin = modeling_common.ModelTesterMixin
GenerationTesterMixin = generation_utils.GenerationTesterMixin
ConfigTester = configuration_common.ConfigTester
ids_tensor, floats_tensor = modeling_common.ids_tensor, modeling_common.floats_tensor

PAD, VIDEO, DELTA, FIRST_TEXT_ID = 0, 1, 2, 3


def _delta_config(**overrides) -> CoPEDeltaConfig:
    kwargs = dict(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, mv_patch_size=2,
        residual_embedding_size=8, residual_hidden_sizes=[8, 16], residual_depths=[1, 1], num_motion_queries=2,
        num_residual_queries=2,
    )
    kwargs.update(overrides)
    return CoPEDeltaConfig(**kwargs)


def _delta_inputs(batch_size: int) -> dict:
    """One Δ step per sample: a 4x4 MV grid `[dx, dy, intra]` and an 8x8 residual."""
    motion = floats_tensor([batch_size, 3, 4, 4])
    motion[:, 2] = (motion[:, 2] > 0.8).float()  # the intra mask is binary
    return {"motion_vectors": motion, "residuals": floats_tensor([batch_size, 3, 8, 8])}


class CoPEVideoLMModelTester:
    """Per sample: one keyframe (16 px, patch 4 -> 4x4 patches, pooled 2x2 = 4 `<|video_pad|>`), one Δ step (4
    `<|delta_pad|>`), then 8 text tokens; placeholders have the low ids 1 and 2 so that shrinking the vocabulary
    (resize tests) keeps them."""

    def __init__(self, parent, batch_size=3, text_length=8):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.pad_token_id = PAD
        self.tokens_per_keyframe = 4
        self.delta_tokens_per_step = 4
        self.text_length = text_length
        self.seq_length = self.tokens_per_keyframe + self.delta_tokens_per_step + text_length
        self.image_size = 16
        self.text_config = dict(
            model_type="qwen2", vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=37,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=2, max_position_embeddings=512, pad_token_id=PAD, bos_token_id=None,
            eos_token_id=None,
        )
        self.vision_config = dict(
            model_type="siglip_vision_model", image_size=self.image_size, patch_size=4, hidden_size=32,
            intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, vision_use_head=False,
        )

    def get_config(self) -> CoPEVideoLMConfig:
        return CoPEVideoLMConfig(
            vision_config=SiglipVisionConfig(**{k: v for k, v in self.vision_config.items() if k != "model_type"}),
            text_config=Qwen2Config(**{k: v for k, v in self.text_config.items() if k != "model_type"}),
            delta_config=_delta_config(),
            video_token_id=VIDEO, delta_token_id=DELTA, frame_newline_token_id=None, delta_end_token_id=None,
            vision_start_token_id=None, vision_end_token_id=None, delta_tokens_per_step=self.delta_tokens_per_step,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        b = self.batch_size
        text = ids_tensor([b, self.text_length], self.vocab_size - FIRST_TEXT_ID) + FIRST_TEXT_ID
        placeholders = torch.tensor([VIDEO] * self.tokens_per_keyframe + [DELTA] * self.delta_tokens_per_step)
        input_ids = torch.cat([placeholders.expand(b, -1), text], dim=1)
        delta = _delta_inputs(b)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values_videos": floats_tensor([b, 3, self.image_size, self.image_size]),
            "delta_motion_vectors": delta["motion_vectors"],
            "delta_residuals": delta["residuals"],
        }
        return config, inputs


class CoPEVideoLMConformanceTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (CoPEVideoLMModel, CoPEVideoLMForConditionalGeneration)
    pipeline_model_mapping = {}
    _is_composite = True
    test_resize_embeddings = True

    def setUp(self):
        self.model_tester = CoPEVideoLMModelTester(self)
        self.config_tester = ConfigTester(self, config_class=CoPEVideoLMConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # The mixin adds labels by upstream's static mapping names, which a plugin's classes are not in; give the
        # model with the LM head its language-modeling labels (placeholders ignored) as causal-LM testers get them.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and model_class is CoPEVideoLMForConditionalGeneration:
            labels = inputs_dict["input_ids"].clone()
            labels[labels < FIRST_TEXT_ID] = -100
            inputs_dict["labels"] = labels
        return inputs_dict

    def _with_head_only(self, test):
        # The mixin's training tests skip head-less base models by upstream's static mapping names (as it skips
        # VideoLlama3Model); CoPEVideoLMModel is not in them, so they run on the class with the LM head only.
        with patch.object(self, "all_model_classes", (CoPEVideoLMForConditionalGeneration,)):
            test()

    def test_training(self):
        self._with_head_only(super().test_training)

    # As LLaVA-OneVision's tests (same SigLIP tower, same feature layer -1): the vision tower's post_layernorm is not
    # on the path to the LM (the projector reads the last hidden state before it), so it gets no gradient, which
    # these tests require of every parameter.
    _GC_REASON = ("As LLaVA-OneVision: this architecture seems to not compute gradients properly when using GC, "
                  "SiglipVisionModel (post_layernorm unused with vision_feature_layer=-1) does not support "
                  "standalone training")

    @unittest.skip(reason=_GC_REASON)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason=_GC_REASON)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason=_GC_REASON)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    def test_multimodal_outputs_are_returned(self):
        # Overridden, as the mixin asks of models it cannot read ("fix your model or override"): it checks
        # `image_outputs`, and CoPE has no image path (an image is a one-keyframe video). The same checks run on
        # what CoPE's encoders return, `video_outputs` and `delta_outputs`.
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            model.set_attn_implementation("eager")
            with torch.no_grad():
                outputs = model(**inputs_dict, output_attentions=True, output_hidden_states=True)
            self.assertIsNone(outputs.image_outputs)
            for encoder_outputs in (outputs.video_outputs, outputs.delta_outputs):
                self.assertTrue(encoder_outputs.attentions and encoder_outputs.hidden_states)
                self.assertEqual(len(encoder_outputs.pooler_output), self.model_tester.batch_size)


class CoPEDeltaEncoderTester:
    """The Δ-encoder alone. Its two query transformers (motion, residual) each have `num_hidden_layers` layers, so
    the recorded hidden states are the motion branch's input + 2 x layers, and attentions 2 x layers; the first
    entries (the motion branch) have `num_motion_queries + motion tokens` = 2 + 2x2 positions."""

    def __init__(self, parent, batch_size=3):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = True
        self.hidden_size = 16
        self.num_hidden_layers = 2  # 1 layer per branch x 2 branches
        self.num_attention_heads = 2
        self.seq_length = 2 + 4

    def get_config(self) -> CoPEDeltaConfig:
        return _delta_config(output_size=16)

    def prepare_config_and_inputs_for_common(self):
        return self.get_config(), _delta_inputs(self.batch_size)


class CoPEDeltaEncoderConformanceTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CoPEDeltaEncoder,)
    pipeline_model_mapping = {}
    test_resize_embeddings = False
    has_attentions = True
    additional_model_inputs = ["residuals"]  # the second required input, as CLIP/SigLIP tests list `pixel_values`

    @unittest.skip(reason="As Videollama3VisionModel / SiglipVisionModel: an encoder without a head does not support "
                          "standalone training (no loss); it trains inside CoPEVideoLMForConditionalGeneration")
    def test_training(self):
        pass

    @unittest.skip(reason="As SiglipVisionModel: an encoder without a head does not support standalone training")
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason="As SiglipVisionModel: an encoder without a head does not support standalone training")
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason="As SiglipVisionModel: an encoder without a head does not support standalone training")
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    def test_model_get_set_embeddings(self):
        # Overridden as SiglipVisionModel's test does: the input "embedding" of a patch encoder is its patch
        # projection (a Conv2d), not an nn.Embedding, and it has no output embeddings.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = CoPEDeltaEncoder(config)
        self.assertIsInstance(model.get_input_embeddings(), torch.nn.Conv2d)
        self.assertIsNone(model.get_output_embeddings())

    def setUp(self):
        self.model_tester = CoPEDeltaEncoderTester(self)
        self.config_tester = ConfigTester(
            self, config_class=CoPEDeltaConfig, has_text_modality=False,
            common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers"],
        )

    def test_config(self):
        if "utils.test_configuration_utils" in UPSTREAM_MISSING:
            # the common kwargs check needs upstream's `config_common_kwargs`; run the other common checks
            for check in ("create_and_test_config_common_properties", "create_and_test_config_to_json_string",
                          "create_and_test_config_to_json_file", "create_and_test_config_from_and_save_pretrained",
                          "create_and_test_config_from_and_save_pretrained_subfolder",
                          "create_and_test_config_with_num_labels", "check_config_can_be_init_without_params"):
                getattr(self.config_tester, check)()
        else:
            self.config_tester.run_common_tests()


def test_upstream_generation_mixin_available():
    """`GenerationTesterMixin` lives in tests/generation/test_utils.py, which no sdist ships; the paths it checks are
    covered token-exact by tests/test_generation_paths.py. Runs for real when COPE_TRANSFORMERS_SOURCE is set."""
    if "generation.test_utils" in UPSTREAM_MISSING:
        pytest.skip(UPSTREAM_MISSING["generation.test_utils"])
    assert any(name.startswith("test_") for name in dir(GenerationTesterMixin))
