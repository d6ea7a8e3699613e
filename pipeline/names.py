"""Names the configuration and the reports share with the learning core, without River (so that
reading a configuration does not pay for importing it)."""

ENSEMBLE = "ensemble"  # the name under which the served prediction is reported
RESPONSES = ("reweight", "reset", "none")  # what a detected drift does
DETECTOR_NAMES = ("adwin", "page_hinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w", "none")
RESET_REASONS = ("drift", "failures", "non_finite")  # why a member was replaced
