"""The learning core: River classifiers learning prequentially, with drift detection.

Knows River and nothing of Kafka, TOML or the service. `driftline evaluate` and `driftline serve`
drive the very same code, so an offline run and a live run give the same numbers.

- `pipeline.ensemble`: `DriftEnsemble`, itself a River classifier; `Prediction`, `Step`,
  `ModelStats`, `LimitExceeded`.
- `pipeline.presets`: the model presets and custom factories.
- `pipeline.preprocessing`: `TypedScaler` and `TreeStrings`, so every model takes numbers,
  booleans and strings.
- `pipeline.drift`: detectors by name and `RiseDetector` (only a rise of the error rate is a drift).
- `pipeline.scoring`: prequential accuracy, macro-F1 and per-class recall, cumulative and rolling.
- `pipeline.pending`: events waiting for a delayed label.
- `pipeline.evaluate`: a learner over a finite stream, with or without label delay.
- `pipeline.names`: names shared with the configuration (no River import).

Import from the modules: this package imports nothing itself, so that reading `pipeline.names`
does not import River.
"""
