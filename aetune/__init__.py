"""aetune: find which autoencoder, with which settings, works best on your data — and see why.

The package: aetune.search (python -m aetune.search), aetune.train (python -m aetune.train), aetune.evaluate
(python -m aetune.evaluate), aetune.models (the families), and what all of them share at this level.
"""
__version__ = "0.2.0"  # before the imports: aetune.experiment records it in every experiment

from aetune.config import TrialConfig  # noqa: E402
from aetune.errors import UsageError  # noqa: E402

__all__ = ["TrialConfig", "UsageError", "__version__"]
