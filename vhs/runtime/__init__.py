"""The in-server runtime: what the Triton models of model_repository/ import inside their stubs.

The `vhs` orchestrator (orchestrator.py: validation, BLS engine calls, budgets, cancellation,
metrics, the manifest check) and the engine models (onnx_engine.py, engine_guard.py). It imports
numpy, tokenizers and onnxruntime; never transformers, diffusers, the exporter or training, and torch
only on a GPU's device path (dlpack.py). tests/test_layering.py checks it.
"""
