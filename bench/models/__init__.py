"""The model zoo: `list_models()` and `load_model(name)` give verified IR graphs with inputs and metrics."""

from .registry import Model, ModelInfo, list_models, load_model, model_names, register_model

__all__ = ["Model", "ModelInfo", "list_models", "load_model", "model_names", "register_model"]
