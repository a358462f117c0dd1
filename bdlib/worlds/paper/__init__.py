"""The paper's world: guided-diffusion's 256x256 UNet, CLIP ViT-B/16 and LPIPS-VGG (``world``), and their checkpoints
(``checkpoints``: where they come from, their checksums, how they load)."""
