"""The method, in the order of the lessons.

``schedules`` (β_t, ᾱ_t, respacing) → ``diffusion`` (q(x_t | x_0), x̂_0, the posterior, DDPM and DDIM steps) →
``sampling`` (the step loop) → ``losses`` (CLIP distances, the masked CLIP loss, range and background losses) →
``augment`` (extending augmentations) → ``algorithms`` (Algorithms 1 and 2 of the paper) → ``settings`` (every knob
of an edit).
"""
