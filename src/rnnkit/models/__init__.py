"""Task models, registered by name.

Each model is an ``nn.Module`` built from one config dataclass, with
``forward``, ``loss(batch, carry)`` and its own inference method.  Models see
tensors and ints only — never files, vocabularies or the trainer.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from torch import nn

from rnnkit.models.classifier import Classifier, ClassifierConfig
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig, LossOutput
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqState
from rnnkit.models.tagger import Tagger, TaggerConfig

# name -> (model class, config class)
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "language_model": (LanguageModel, LanguageModelConfig),
    "classifier": (Classifier, ClassifierConfig),
    "tagger": (Tagger, TaggerConfig),
    "seq2seq": (Seq2Seq, Seq2SeqConfig),
}


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Build a registered model from a plain dict (e.g. the ``model`` part of config.json)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    cls, cfg_cls = MODELS[name]
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {name} config fields {unknown}; expected some of {sorted(known)}")
    return cls(cfg_cls(**config))


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    return asdict(model.config)


__all__ = ["MODELS", "build_model", "model_config_dict", "LanguageModel", "LanguageModelConfig", "LossOutput",
           "Classifier", "ClassifierConfig", "Tagger", "TaggerConfig",
           "Seq2Seq", "Seq2SeqConfig", "Seq2SeqState"]
