"""What the lessons use around the method: figures (``viz``, ``animation``), the λ and k panels (``widgets``,
``sweep_panel``, ``edit_cache``) and the lessons' measurements (``analysis``, ``precision_effect``)."""
