"""Deployment of compiled artifacts on a Ray cluster: one actor per (stage, replica)."""
