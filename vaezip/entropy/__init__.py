"""Entropy modelling: quantization, the training densities (priors), frozen coding tables and the coder."""
