"""The search driver: a space file -> one Ray Tune run of every variant -> summary.json.

`python -m aetune.search`. Parses and guards the space, routes each variant to its own searcher and scheduler, runs
trials through aetune.train, keeps a resumed run exact and writes each variant's pick and front.
"""
