"""Segment new, unlabelled images with a confidence rating (issue 14).

``segrobust.predict.batch.predict_folder`` is the one entry point, used by the workflow's
``predict_images`` rule and by the ``segrobust predict`` console command (``segrobust.cli``).
``segrobust.spec.predict_targets`` turns the config's ``predict:`` section into the runs the rule
needs; it imports neither torch nor MONAI, as the Snakefile imports it at parse time.
"""
