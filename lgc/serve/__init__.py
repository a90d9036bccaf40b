"""Serving compiled models over the Open Inference Protocol (KServe v2 REST)."""
