"""The guard: refuse a search whose answer is known before it runs, because every objective (or ASHA's metric)
rewards one end of a searched knob (aetune.metrics.BIASED says which knob biases which metric).

Each check returns the refusal's text, or None; aetune.search.spaces raises it with the file and key.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aetune.metrics import CODE_SIZE_BIAS, Bias

if TYPE_CHECKING:
    from aetune.search.spaces import Search


def bias_refusal(bias: Bias, search: Search, detail: str = "") -> str | None:
    """Objectives that all reward one end of the knob, or an ASHA that stops trials on such a metric (it would cut
    one end of a front before it is seen)."""
    on = f"alone on {search.metric[0]}" if len(search.metric) == 1 else f"on {', '.join(search.metric)}"
    if bias.biased(search.metric):
        return f"searched {on}{detail}: {bias.why}; {bias.fix}"
    if search.scheduler == "asha" and bias.biased((search.asha_metric,)):
        return (f"ASHA stops trials on {search.asha_metric}, which rewards one end of this knob: the front would "
                "lose the other end early; use scheduler: fifo")
    return None


def code_size_refusal(search: Search, sizes: set[int]) -> str | None:
    """A key whose options give codes of different sizes (e.g. conv filters: the last count sets the code) is a
    code-size knob, whatever its name."""
    if len(sizes) < 2:
        return None
    return bias_refusal(CODE_SIZE_BIAS, search, f" (its options give codes of {min(sizes)} to {max(sizes)} numbers)")
