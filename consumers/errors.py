"""The errors `consumers` raises: one root, `StreamError`, so callers never see the Kafka client's.

`consumers` sits below `driftline` and must not import it, so this root stands beside
`driftline.errors.DriftlineError` rather than under it (docs/design.md, "Errors").
"""


class StreamError(Exception):
    """Root of every error raised while reading or writing a topic."""


class BrokerUnavailable(StreamError):
    """The broker could not be reached, or did not complete a request (a poll, a commit...)."""


class DeliveryFailed(StreamError):
    """A message could not be handed to the broker (a dead letter, a published event)."""


class NotAssigned(StreamError):
    """A partition this consumer was asked to position is not (or no longer) assigned to it."""
