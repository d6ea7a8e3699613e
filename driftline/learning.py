"""The learner that the settings describe: presets, factories and detectors resolved through
`pipeline`, with its errors turned into `ConfigError`s that name the configuration key."""

from __future__ import annotations

from driftline.config import Settings
from driftline.errors import ConfigError
from pipeline.drift import make_detector
from pipeline.ensemble import DriftEnsemble
from pipeline.presets import build_model


def build_learner(settings: Settings) -> DriftEnsemble:
    """A fresh learner for `settings`; raises `ConfigError` naming a bad key."""
    models = {}
    for i, spec in enumerate(settings.models):
        try:
            models[spec.name] = build_model(spec.model)
        except (LookupError, ValueError) as exc:
            raise ConfigError(f"models[{i}].model: {exc}") from None
    drift = settings.drift
    try:
        detector = make_detector(drift.detector, drift.params)
    except LookupError as exc:
        raise ConfigError(f"drift.detector: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"drift.params: {exc}") from None
    learning = settings.learning
    return DriftEnsemble(
        models,
        detector,
        response=drift.response,
        boost=drift.boost,
        boost_decay=drift.boost_decay,
        fading=drift.fading,
        sharpness=drift.sharpness,
        window=learning.rolling_window,
        reset_after=learning.reset_after_failures,
        max_classes=learning.max_classes,
        max_feature_names=learning.max_feature_names,
        sleep_margin=learning.sleep_margin or None,
        sleep_after=learning.sleep_after,
        wake_every=learning.wake_every,
    )
