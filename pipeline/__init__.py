"""The learning core: River classifiers learning prequentially, with drift detection.

Knows River and nothing of Kafka, TOML or the service: `DriftEnsemble` is itself a River
classifier. `driftline evaluate` and `driftline serve` drive the very same code, so an offline
run and a live run give the same numbers.
"""

from pipeline.drift import DETECTOR_NAMES, RiseDetector, make_detector
from pipeline.ensemble import (
    ENSEMBLE,
    RESET_REASONS,
    RESPONSES,
    DriftEnsemble,
    LimitExceeded,
    ModelStats,
    Prediction,
    Step,
)
from pipeline.presets import PRESETS, FactoryError, build_model
from pipeline.scoring import Score

__all__ = [
    "DETECTOR_NAMES",
    "ENSEMBLE",
    "PRESETS",
    "RESET_REASONS",
    "RESPONSES",
    "DriftEnsemble",
    "FactoryError",
    "LimitExceeded",
    "ModelStats",
    "Prediction",
    "RiseDetector",
    "Score",
    "Step",
    "build_model",
    "make_detector",
]
