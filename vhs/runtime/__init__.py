"""The in-server runtime: what the Triton models of model_repository/ import inside their stubs.

The `vhs` orchestrator (orchestrator.py: validation, BLS engine calls, budgets, cancellation,
metrics, the manifest check) and the engine models (onnx_engine.py, engine_guard.py). It imports
numpy, tokenizers and onnxruntime, never torch, the exporter or training (tests/test_layering.py).
"""
