"""Training one trial: the dataset layer, the Trainer's epoch loop, checkpoints and the per-trial TensorBoard logger.

`python -m aetune.train` trains one config without a search. Imports nothing from aetune.search or aetune.evaluate.
"""
