"""The source of the Triton model repository, installed as `vhs.model_repository` (package data).

The exporter copies the model files in and writes configs like the ones here (README.md); it finds
them with `importlib.resources` (`vhs.export.repository`), so an installed wheel exports as a
checkout does. Triton never reads this folder itself.
"""
