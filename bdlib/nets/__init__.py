"""The networks: the ADM UNet (``unet``, ``unet_blocks``, ``unet_attention``), the CLIP and LPIPS adapters, and the
UNet's training loss."""
