"""``nas netadapt``: NetAdapt (arXiv 1804.03230) as a run.

The widths of a trained network shrink under a latency schedule (``run``: the ``netadapt``
controller over ``nas.spaces.widths``, the ``finetune`` and ``latency`` evaluators), then the
chosen network is fine-tuned for long and written out (``outputs``).
"""
