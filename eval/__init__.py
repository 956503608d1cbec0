"""Evaluation: predictions in, the paper's tables and the evidence a reviewer asks for out."""
