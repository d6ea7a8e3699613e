"""One exception root; each subclass names one kind of failure."""


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose."""


class ConfigError(DriftlineError):
    """A wrong configuration key or value; the service must not start."""


class BrokerError(DriftlineError):
    """The local Kafka broker could not be fetched, started or stopped."""


class DataError(DriftlineError):
    """An input file (CSV) that cannot be read as a stream of events."""
