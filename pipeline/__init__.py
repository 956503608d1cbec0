"""The two-stage reasoning pipeline: one module per concern, one function per stage."""
