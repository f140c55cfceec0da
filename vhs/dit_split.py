"""SANA-Sprint's single-step DiT, split after block `l` into a prefix and a suffix.

Both halves wrap the diffusers `SanaTransformer2DModel`'s own submodules (no copied weights, no
re-implemented blocks), and both carry their share of SANA-Sprint's single-step sampling maths
(`SanaSprintPipeline.__call__`, one step of `SCMScheduler` with TrigFlow parameterisation), so that

    DiTSuffix(DiTPrefix(noise, ...), noise, ...) == the pipeline's denoised latent for the VAE

and the host code around the graphs never repeats that maths.
"""

from __future__ import annotations

import torch
from diffusers import SanaTransformer2DModel
from torch import nn

# What the prefix hands to the suffix, in order. The suffix additionally takes `noise` and
# `timestep` (the same tensors the prefix was given) to undo the SCM input scaling.
PREFIX_OUTPUTS = (
    "hidden_states",  # (B, tokens, width): the block-`l` output that the verifier reads
    "block_modulation",  # (B, 6 * width): timestep+guidance modulation shared by all blocks
    "embedded_timestep",  # (B, width): conditioning of the final modulated norm
    "encoder_hidden_states",  # (B, text tokens, width): projected and normed caption tokens
    "encoder_attention_bias",  # (B, 1, text tokens): 0 for real tokens, -10000 for padding
)
PREFIX_INPUTS = ("noise", "prompt_embeds", "prompt_attention_mask", "timestep", "guidance")
SUFFIX_INPUTS = PREFIX_OUTPUTS + ("noise", "timestep")
SUFFIX_OUTPUTS = ("denoised_latents",)


def check_split_block(transformer: SanaTransformer2DModel, split_block: int) -> None:
    """Raise ValueError unless `split_block` is a block of the transformer. At the last block the
    suffix is the output head and the single-step update alone."""
    num_blocks = len(transformer.transformer_blocks)
    if not isinstance(split_block, int) or not 0 <= split_block <= num_blocks - 1:
        raise ValueError(
            f"split_block (l*) must be an integer in [0, {num_blocks - 1}] for a {num_blocks}-block DiT, "
            f"got {split_block!r}"
        )


def scm_timestep(timestep: torch.Tensor) -> torch.Tensor:
    """TrigFlow time t (B,) -> the sCM time the transformer is conditioned on, sin t / (cos t + sin t)."""
    return torch.sin(timestep) / (torch.cos(timestep) + torch.sin(timestep))


def _input_scale(scm_t: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(scm_t**2 + (1 - scm_t) ** 2)


def run_blocks(
    blocks: nn.ModuleList,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    encoder_attention_bias: torch.Tensor,
    block_modulation: torch.Tensor,
    grid_size: tuple[int, int],
) -> torch.Tensor:
    """Run Sana blocks as `SanaTransformer2DModel.forward` does (no self-attention mask)."""
    for block in blocks:
        hidden_states = block(
            hidden_states, None, encoder_hidden_states, encoder_attention_bias, block_modulation, *grid_size
        )
    return hidden_states


class DiTPrefix(nn.Module):
    """Patch embedding, caption projection, timestep+guidance embedding and blocks `0..split_block`.

    Inputs: noise (B, C, h, w) standard normal; prompt_embeds (B, S, caption width); prompt_attention_mask
    (B, S) in {0, 1}; timestep (B,) TrigFlow time (pi/2 for one step); guidance (B,) guidance scale.
    Outputs: the tuple named by `PREFIX_OUTPUTS`.
    """

    def __init__(self, transformer: SanaTransformer2DModel, split_block: int, sigma_data: float):
        super().__init__()
        check_split_block(transformer, split_block)
        if not transformer.config.guidance_embeds:
            raise ValueError(
                "the DiT split expects a guidance-distilled SANA-Sprint transformer (guidance_embeds)"
            )
        self.patch_size = transformer.config.patch_size
        self.guidance_embeds_scale = transformer.config.guidance_embeds_scale
        self.sigma_data = sigma_data
        self.patch_embed = transformer.patch_embed
        self.time_embed = transformer.time_embed
        self.caption_projection = transformer.caption_projection
        self.caption_norm = transformer.caption_norm
        self.blocks = transformer.transformer_blocks[: split_block + 1]

    def forward(self, noise, prompt_embeds, prompt_attention_mask, timestep, guidance):
        batch_size, _, height, width = noise.shape
        dtype = self.patch_embed.proj.weight.dtype
        # SanaSprintPipeline: latents = noise * sigma_data, model input = latents / sigma_data * scale,
        # computed in float32 and cast to the transformer's dtype; guidance in the text encoder's dtype.
        latents = noise * self.sigma_data
        scm_t = scm_timestep(timestep)
        model_input = (latents / self.sigma_data * _input_scale(scm_t.view(-1, 1, 1, 1))).to(dtype)
        guidance = guidance.to(prompt_embeds.dtype) * self.guidance_embeds_scale

        encoder_attention_bias = ((1 - prompt_attention_mask.to(dtype)) * -10000.0).unsqueeze(1)
        hidden_states = self.patch_embed(model_input)
        block_modulation, embedded_timestep = self.time_embed(scm_t, guidance=guidance, hidden_dtype=dtype)
        encoder_hidden_states = self.caption_projection(prompt_embeds.to(dtype))
        encoder_hidden_states = self.caption_norm(
            encoder_hidden_states.view(batch_size, -1, hidden_states.shape[-1])
        )

        grid_size = (height // self.patch_size, width // self.patch_size)
        hidden_states = run_blocks(
            self.blocks,
            hidden_states,
            encoder_hidden_states,
            encoder_attention_bias,
            block_modulation,
            grid_size,
        )
        return (
            hidden_states,
            block_modulation,
            embedded_timestep,
            encoder_hidden_states,
            encoder_attention_bias,
        )


class DiTSuffix(nn.Module):
    """Blocks `split_block+1..L-1`, final modulated norm, `proj_out`, unpatchify, and the single-step
    TrigFlow update; returns the latent the VAE decodes (`denoised / sigma_data`, before the VAE's
    own `scaling_factor`), shape (B, C, h, w).
    """

    def __init__(self, transformer: SanaTransformer2DModel, split_block: int, sigma_data: float):
        super().__init__()
        check_split_block(transformer, split_block)
        self.patch_size = transformer.config.patch_size
        self.sigma_data = sigma_data
        self.blocks = transformer.transformer_blocks[split_block + 1 :]
        self.norm_out = transformer.norm_out
        self.scale_shift_table = transformer.scale_shift_table
        self.proj_out = transformer.proj_out

    def forward(
        self,
        hidden_states,
        block_modulation,
        embedded_timestep,
        encoder_hidden_states,
        encoder_attention_bias,
        noise,
        timestep,
    ):
        batch_size, _, height, width = noise.shape
        p = self.patch_size
        grid_height, grid_width = height // p, width // p
        hidden_states = run_blocks(
            self.blocks,
            hidden_states,
            encoder_hidden_states,
            encoder_attention_bias,
            block_modulation,
            (grid_height, grid_width),
        )
        hidden_states = self.norm_out(hidden_states, embedded_timestep, self.scale_shift_table)
        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_size, grid_height, grid_width, p, p, -1)
        model_output = hidden_states.permute(0, 5, 1, 3, 2, 4).reshape(batch_size, -1, height, width)

        # SanaSprintPipeline's output conversion, then SCMScheduler.step's one-step TrigFlow update.
        latents = noise * self.sigma_data
        scm_t = scm_timestep(timestep).view(-1, 1, 1, 1)
        scale = _input_scale(scm_t)
        model_input = latents / self.sigma_data * scale
        velocity = ((1 - 2 * scm_t) * model_input + (1 - 2 * scm_t + 2 * scm_t**2) * model_output) / scale
        velocity = velocity.float() * self.sigma_data
        t = timestep.view(-1, 1, 1, 1)
        denoised = torch.cos(t) * latents - torch.sin(t) * velocity
        return denoised / self.sigma_data
