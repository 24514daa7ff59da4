"""aetune: find which autoencoder, with which settings, works best on your data — and see why."""
from aetune.config import TrialConfig
from aetune.errors import UsageError

__version__ = "0.1.0"
__all__ = ["TrialConfig", "UsageError", "__version__"]
