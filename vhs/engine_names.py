"""Names of the engines, which are also their Triton model names. Import-light: no torch."""

TEXT_ENCODER = "text_encoder"
DIT_PREFIX = "dit_prefix"
DIT_SUFFIX = "dit_suffix"
VAE_DECODER = "vae_decoder"
CONNECTOR = "connector"
CLIP_VISION = "clip_vision"
LATENT_CONNECTOR = "latent_connector"
LLM = "llm"

ALL = (TEXT_ENCODER, DIT_PREFIX, DIT_SUFFIX, VAE_DECODER, CONNECTOR, CLIP_VISION, LATENT_CONNECTOR, LLM)
