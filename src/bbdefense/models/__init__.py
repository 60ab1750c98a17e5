"""Models: the query oracle (:class:`BlackBox`), white-box access, backends, the zoo, checkpoints."""

from .backends import CallableBackend, OnnxBackend, TorchBackend, TorchScriptBackend
from .blackbox import OUTPUT_MODES, BlackBox, OutputMode, QueryStats, WhiteBox
from .checkpoint import CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from .loading import load_blackbox
from .onnx_export import export_onnx
from .resolve import ModelKindError, ModelSource, ModelSpecError, model_source
from .validation import validate_images
from .zoo import MODELS, ImageClassifier, Normalize, build_model, register_model

__all__ = [
    "MODELS", "OUTPUT_MODES", "BlackBox", "CallableBackend", "CheckpointMeta", "ImageClassifier", "ModelKindError",
    "ModelSource", "ModelSpecError", "Normalize",
    "OnnxBackend", "OutputMode", "QueryStats", "TorchBackend", "TorchScriptBackend", "WhiteBox", "build_model",
    "export_onnx", "load_blackbox", "load_checkpoint", "model_source", "read_meta", "register_model", "save_checkpoint",
    "validate_images",
]
