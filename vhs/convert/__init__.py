"""Verifier folders for generators this project did not build: a fresh one (`vhs-init-verifier`) or
the authors' released checkpoints converted (`vhs-convert`)."""
