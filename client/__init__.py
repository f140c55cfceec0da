"""The thin client of the `vhs` model: `VHSClient` (blocking, gRPC or HTTP), `AsyncVHSClient` (asyncio,
gRPC) and the `vhs-client` CLI."""

from .vhs_client import AsyncVHSClient, GenerationResult, ImageRequest, VHSClient, VHSRequestError

__all__ = ["AsyncVHSClient", "GenerationResult", "ImageRequest", "VHSClient", "VHSRequestError"]
