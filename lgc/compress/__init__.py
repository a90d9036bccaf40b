"""Model compression: quantization, reduced-precision storage, pruning, decomposition."""
