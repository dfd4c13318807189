"""Evaluators: datasets, proxy training and cost."""
