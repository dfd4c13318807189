"""``nas search``: a cell or block search run.

The search kind of run (``nas.search.run``): its settings, the space, controller and evaluator
they name, the final selection stage that evaluates the best candidates again (``final``), and
what a finished search leaves in its directory (``report``: best.json, report.md, pictures).
"""
