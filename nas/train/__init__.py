"""``nas train``: train a found architecture with the standard recipe, FixRes and Noisy Student.

``settings`` (every flag and the recipe it makes), ``fit`` (one checkpointed training),
``stages`` (FixRes, arXiv 1906.06423, and Noisy Student, arXiv 1911.04252, on top of it),
``augment`` (RandomResizedCrop + RandAugment), ``fixres`` and ``noisy_student`` (the two
methods' own parts), ``run`` (the run directory).
"""
