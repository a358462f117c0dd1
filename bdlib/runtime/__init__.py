"""What every command stands on: randomness, precision, devices, memory, image and file I/O, safe loading of
weights, downloads and torchrun."""
