"""SHA-256 of every toy weight file shipped in ``bdlib/worlds/toy/weights/``: the one table the loader checks.

:func:`bdlib.worlds.toy.weights_io.load_weights` refuses a shipped file whose hash differs (a damaged file loads
without error and edits into a black image). ``python -m bdlib train NAME --export --replace-shipped`` writes new
weights and then rewrites their entry here and the SHA-256 line of their model card (``weights/NAME.md``), so
retraining stays possible; replace a file by hand only together with its entry.
"""

SHIPPED_SHA256: dict[str, str] = {
    "oracle": "1658c42a19e0ccd2c9f671952d6c244ee43fa12dcb2b2447052f40115b034be8",
    "toy_clip": "e2ca063e65b2beba164694ce245bd19752606e28e66c14df711a4b62f9ef9fd0",
    "toy_ddpm": "8d86e0f1bd0d3dccaac13759c0755a39509a858348a1a7235600e23837f5b229",
    "toy_noise_aware_clip": "03a7b1af4990ab1b95fa21cca0ae88322c04cfea741edbcad011943c746d812d",
}
