"""Custom model factories that test configurations point at ('tests.unit.factories:...')."""

from river import naive_bayes


def make_model():
    return naive_bayes.GaussianNB()


def make_not_a_model():
    return object()


def make_raising():
    raise RuntimeError("boom")
