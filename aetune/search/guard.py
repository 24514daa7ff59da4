"""The guard: refuse a search whose answer is known before it runs, because every objective (or ASHA's metric)
rewards one end of a searched knob (aetune.metrics.BIASED says which knob biases which metric), or whose scores do
not compare between trials (a searched key changes the units of the metric).

Each check returns the refusal's text, or None; aetune.search.spaces raises it with the file and key.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aetune.metrics import CODE_SIZE_BIAS, OWN_LOSS, Bias, for_family

if TYPE_CHECKING:
    from aetune.search.spaces import Search


def bias_refusal(bias: Bias, search: Search, detail: str = "") -> str | None:
    """Objectives that all reward one end of the knob (in their modes; one the knob does not move balances
    nothing), or an ASHA that stops trials on such a metric (it would cut one end of a front before it is seen)."""
    on = f"alone on {search.metric[0]}" if len(search.metric) == 1 else f"on {', '.join(search.metric)}"
    on += f" ({', '.join(search.mode)})" if "max" in search.mode else ""
    if bias.biased(search.metric, search.mode):
        still = [m for m in search.metric if m in bias.constant]
        detail += f"; {' and '.join(still)} does not move with it, so it balances nothing" if still else ""
        return f"searched {on}{detail}: {bias.why}; {bias.fix}"
    if search.scheduler == "asha" and bias.biased((search.asha_metric,), (search.asha_mode,)):
        return (f"ASHA stops trials on {search.asha_metric}, which rewards one end of this knob: the front would "
                "lose the other end early; use scheduler: fifo")
    return None


def code_size_refusal(search: Search, sizes: set[int], likelihood: bool = False) -> str | None:
    """A key (or keys together) whose options give codes of different sizes (e.g. conv filters: the last count
    sets the code) is a code-size knob, whatever its name (`likelihood`: every option's own loss is a likelihood
    bound, which charges the code its KL: see metrics.for_family). Its parameter count is no measure of the code: conv
    filters [8, 8] have fewer parameters than [16, 8, 8] and a code three times as large."""
    if len(sizes) < 2:
        return None
    detail = f" (its options give codes of {min(sizes)} to {max(sizes)} numbers)"
    if "params" in search.metric and "code_size" not in search.metric:
        return (f"searched on {', '.join(search.metric)}{detail}: the parameter count does not order these codes "
                "by size (conv filters [8, 8] have fewer parameters than [16, 8, 8] and a code three times as "
                "large), so the front is not the code-size trade-off; name the code size, metric: [val_bce, "
                "code_size] (or [val_bce, code_size, params])")
    return bias_refusal(for_family(CODE_SIZE_BIAS, likelihood), search, detail)


def units_refusal(search: Search, what: str) -> str | None:
    """A searched key that changes the units of the variant's own loss (`what` says how) makes val_loss and
    train_loss numbers that do not compare between its options."""
    on = [m for m in (*search.metric, search.asha_metric if search.scheduler == "asha" else None) if m in OWN_LOSS]
    if not on:
        return None
    return (f"{what}, so {on[0]} of one option does not compare with another's; score the trials on a metric "
            "every option measures alike: metric: val_bce (or val_mse)")
