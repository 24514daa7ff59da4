"""The statistics behind the findings' claims: Holm's step-down correction, checked by hand, and a finding whose
comparisons each pass at 5 % alone but not together."""
from __future__ import annotations

import pytest

from aetune.evaluate import stats
from aetune.evaluate.findings import findings
from aetune.evaluate.scoring import leaderboard


def test_holm_matches_hand_computed_values():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running maximum 0.06
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # an untested comparison (None) is not counted: m = 2; 0.5 x 2 = 1.0 (capped), 0.9 x 1 raised to 1.0
    adjusted = stats.holm([0.5, None, 0.9])
    assert adjusted[1] is None and adjusted[0] == pytest.approx(1.0) and adjusted[2] == pytest.approx(1.0)
    assert stats.holm([0.02, None, 0.2]) == [pytest.approx(0.04), None, pytest.approx(0.2)]


def _pick(name: str, code: int, runs: list[float], pca: float) -> list[dict]:
    pick = {"name": name, "kind": "model", "code": code, "image_numel": 784, "test_bce": runs[0],
            "val_bce": runs[0], "selected_on": "validation", "pca_baseline": f"pca-{code}"}
    repeats = [{"name": f"{name}~seed={i}", "kind": "repeat", "code": code, "val_bce": v, "test_bce": v}
               for i, v in enumerate(runs, 1)]
    return [pick, *repeats, {"name": f"pca-{code}", "kind": "baseline", "code": code, "test_bce": pca}]


def test_two_comparisons_each_below_5_percent_alone_are_not_claimed_together():
    runs = {"a": [0.100, 0.101, 0.102], "b": [0.200, 0.201, 0.202]}
    pca = {"a": 0.1045, "b": 0.2045}
    raw = [stats.p_value(runs[n], [pca[n]], b_fixed=True) for n in ("a", "b")]
    assert all(p < stats.ALPHA for p in raw)  # each alone: "better than PCA"
    assert all(p >= stats.ALPHA for p in stats.holm(raw))  # both together: no longer
    rows = leaderboard(_pick("a", 8, runs["a"], pca["a"]) + _pick("b", 16, runs["b"], pca["b"]))
    text = "\n".join(f["text"] for f in findings({}, rows, {}))
    assert "[indistinguishable at 3 seeds: a 0.101 ± 0.0025 over 3 seeds vs 0.1045 for pca-8; b 0.201 ± 0.0025 " \
        "over 3 seeds vs 0.2045 for pca-16]" in text
    assert "[better:" not in text
    alone = "\n".join(f["text"] for f in findings({}, leaderboard(_pick("a", 8, runs["a"], pca["a"])), {}))
    assert "[better: a 0.101 ± 0.0025 over 3 seeds vs 0.1045 for pca-8]" in alone
