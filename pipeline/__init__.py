"""Everything that knows River; nothing here knows Kafka.

The core (`pipeline.core.Pipeline`) is pure: `driftline evaluate` and `driftline serve` drive the
very same code, so an offline run and a live run give the same numbers.
"""

from pipeline.core import ModelStats, Pipeline, build_pipeline

__all__ = ["ModelStats", "Pipeline", "build_pipeline"]
