"""bdlib: a teaching implementation of Blended Diffusion (Avrahami, Lischinski, Fried, CVPR 2022)."""

__version__ = "0.1.0"
