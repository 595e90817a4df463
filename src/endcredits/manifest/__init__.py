"""Manifest: the exact list of works one training run used, committed by a Merkle root."""
