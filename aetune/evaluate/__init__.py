"""The evaluation: an experiment folder -> test scores, baselines, findings, figures and report.html.

`python -m aetune.evaluate`. Reads experiments through aetune.experiment (summary.json) and checkpoints through
aetune.train; never imports aetune.search.
"""
