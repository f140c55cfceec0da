"""Names of the engines, which are also their Triton model names. Import-light: no torch.

Which engines a request calls, and in which order, is the mode table's business (`vhs/modes.py`).
"""

TEXT_ENCODER = "text_encoder"
DIT_PREFIX = "dit_prefix"
DIT_SUFFIX = "dit_suffix"
VAE_DECODER = "vae_decoder"
CONNECTOR = "connector"
CLIP_VISION = "clip_vision"
LATENT_CONNECTOR = "latent_connector"
LLM = "llm"  # the VHS verifier's LLM
CLIP_LLM = "clip_llm"  # the CLIP baseline's own fine-tuned LLM
LATENT_LLM = "latent_llm"  # the AE-latent baseline's own fine-tuned LLM
