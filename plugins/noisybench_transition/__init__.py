"""The noise transition matrix T shared by the ``forward`` and ``backward`` methods (Patrini
et al., CVPR 2017): T_ij = p(noisy label j | true label i), given (the run's synthetic noise,
a file) or estimated from a first model by the anchor-point rule (``matrix``); the hooks the
two methods share (``correction``). Not a method itself: it has no entry point."""
