"""Export-friendly swaps for diffusers modules whose code does not trace with a dynamic batch.

Each swap changes how a computation is expressed, never what it computes; tests check equality with
the original module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import SanaTransformer2DModel
from diffusers.models.attention_processor import Attention


class BroadcastMaskSanaAttnProcessor:
    """Sana's cross-attention (`SanaAttnProcessor2_0`) with the caption mask broadcast over heads.

    diffusers repeats the (B, 1, S) additive mask per head and views it as (B, heads, 1, S); with a
    symbolic batch, torch.export cannot prove that view valid (`The size of tensor a (64) must match
    the size of tensor b ((s24//s13))`). Broadcasting it as (B, 1, 1, S) gives identical scores.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch_size = hidden_states.shape[0]
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        if attention_mask is not None:
            attention_mask = attention_mask.reshape(batch_size, 1, 1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)

        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states / attn.rescale_output_factor


def use_export_friendly_attention(transformer: SanaTransformer2DModel) -> SanaTransformer2DModel:
    """Swap every block's cross-attention processor in place; returns the transformer."""
    for block in transformer.transformer_blocks:
        if block.attn2 is not None:
            block.attn2.set_processor(BroadcastMaskSanaAttnProcessor())
    return transformer
