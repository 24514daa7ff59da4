"""The metrics a trial reports, and which searched knobs bias which of them.

Shared by the search (its guard refuses biased objectives) and the evaluation (its findings report such knobs as a
curve, never a "best"): both must agree on what a knob does to a score.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

# What a trial reports each epoch, all on the validation split (aetune.train.trainer.Trainer.evaluate); a family's
# extra_metrics (the VAE's kl) come on top.
METRICS = ("val_loss", "val_bce", "val_mse", "val_denoise_bce", "train_loss", "code_l1", "code_size", "params")
RECONSTRUCTION = ("val_loss", "train_loss", "val_bce", "val_mse", "val_denoise_bce")
OWN_LOSS = ("val_loss", "train_loss")  # in the variant's own units: its loss kind, and its family's reduction
MODEL_PROPERTIES = ("code_size", "params")  # fixed by the architecture: no training knob moves them


@dataclass(frozen=True)
class Bias:
    """A knob that only trades one score for another: metrics that, minimised, reward the low end of its range
    whatever the data, those that reward the high end, those the knob does not move, why, and what to search
    instead. A search whose objectives (or ASHA's metric) all reward one end, or do not move, returns that end: an
    answer known before it ran. Maximising a metric rewards the other end."""

    low: tuple[str, ...]
    high: tuple[str, ...]
    why: str
    fix: str
    constant: tuple[str, ...] = ()

    def end(self, metric: str, mode: str) -> str | None:
        """The end of the range that optimising `metric` in `mode` rewards: "low", "high", or None where the
        data decide (a metric not listed)."""
        end = "low" if metric in self.low else "high" if metric in self.high else None
        if end is None or mode == "min":
            return end
        return "high" if end == "low" else "low"

    def biased(self, metrics: tuple[str, ...], modes: tuple[str, ...]) -> bool:
        """Every objective that the knob moves rewards the same end (one that does not move balances nothing)."""
        ends = {self.end(m, mode) for m, mode in zip(metrics, modes) if m not in self.constant}
        return len(ends) == 1 and None not in ends


CODE_SIZE_BIAS = Bias(("code_size", "params"), RECONSTRUCTION,
                      "a larger code always reconstructs better, so the search returns the end of the range",
                      "search the trade-off, metric: [val_bce, code_size], or sweep over it")
BIASED = {
    "l1": Bias(RECONSTRUCTION, ("code_l1",),
               "the L1 penalty only costs reconstruction (val_loss and train_loss even contain it), so the search "
               "returns the end of the l1 range",
               "search the trade-off, metric: [val_bce, code_l1], or sweep: {l1: [...]}", MODEL_PROPERTIES),
    "noise_factor": Bias(("val_loss", "train_loss", "val_bce", "val_mse"), (),
                         "it scores each trial on inputs at its own noise (or on clean ones), so the search returns "
                         "the lowest noise_factor",
                         "use metric: val_denoise_bce (clean images from inputs at the space's fixed eval_noise)",
                         MODEL_PROPERTIES),
    "beta": Bias(RECONSTRUCTION, ("kl",),
                 "a smaller KL weight always reconstructs better (and val_loss weighs the KL by it), so the search "
                 "returns the end of the beta range",
                 "search the trade-off, metric: [val_bce, kl], or sweep: {beta: [...]}", MODEL_PROPERTIES),
    "code_size": CODE_SIZE_BIAS,
}


def for_family(bias: Bias, likelihood: bool) -> Bias:
    """The bias as it applies to a family whose own loss is a likelihood bound (`likelihood`: the model says so, e.g.
    a VAE's negative ELBO): the bound charges every latent dimension its KL, so it is the standard criterion for the
    latent size, and the code size does not bias its val_loss and train_loss. Other biases are unchanged."""
    if bias is not CODE_SIZE_BIAS or not likelihood:
        return bias
    return replace(bias, high=tuple(m for m in bias.high if m not in OWN_LOSS))
