"""What the common-filters study found: one filter comparison per generator pair, and fine-tuning speed.

:class:`CommonFiltersResult` holds the :class:`probes.filters.FilterResult` of each pair in
:data:`COMPARED_PAIRS`, one summary row per pair (:func:`comparison_row`) and the validation
logs of the from-scratch and the fine-tuned aging runs (:func:`steps_to_match`). ``save(out)``
writes ``compare/<a>-vs-<b>/``, ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from probes.filters import FilterResult
from probes.outputs import atomic_write_bytes

# (a, b): aging vs a generator trained for another task (lfw), vs the general-purpose one (pretrain),
# vs the fine-tuned one; fine-tuned vs its start; aging vs its own initial weights (how far training moved)
COMPARED_PAIRS = (("aging", "lfw"), ("aging", "pretrain"), ("aging", "finetuned"), ("finetuned", "pretrain"),
                  ("aging", "aging_init"))


def comparison_row(a: str, b: str, result: FilterResult) -> dict:
    """One pair's filter matching and CKA, averaged over its layer pairs, beside chance."""
    table = result.table
    return {"a": a, "b": b, "layers": len(table),
            "layers_more_than_chance": int((table.verdict == "more than chance").sum()),
            "expected_by_chance_alone": round(len(table) * (1 - result.level) / 2, 2),
            "layers_below_chance": int((table.verdict == "below chance").sum()),
            "matched_mean": float(table.matched_mean.mean()), "chance_mean": float(table.chance_mean.mean()),
            "frac_above": float(table.frac_above.mean()), "chance_frac": float(table.chance_frac.mean()),
            "cka_mean": float(table.cka.mean()), "cka_chance_mean": float(table.cka_chance.mean()),
            "cka_more_than_chance": int((table.cka_verdict == "more than chance").sum())}


def steps_to_match(scratch: pd.DataFrame, tuned: pd.DataFrame, tolerance: float) -> dict:
    """First validation step at which fine-tuning reaches from-scratch's final age accuracy and identity."""
    final = scratch.iloc[-1]
    out = {"scratch_final_step": int(final.step), "scratch_final_age_acc": float(final.val_age_acc),
           "scratch_final_identity_cos": float(final.val_identity_cos), "tolerance": tolerance}
    for name, table in (("scratch", scratch), ("finetuned", tuned)):
        ok = table[(table.val_age_acc >= final.val_age_acc - tolerance)
                   & (table.val_identity_cos >= final.val_identity_cos - tolerance)]
        out[f"{name}_first_step_reaching_it"] = int(ok.step.iloc[0]) if len(ok) else None
    return out


@dataclass
class CommonFiltersResult:
    """The study's comparisons ({(a, b): FilterResult}), settings and validation logs."""

    comparisons: dict[tuple[str, str], FilterResult]
    model: dict  # the IPCGAN config every generator shares
    aging_run: str
    steps_aging: int
    steps_pretrain: int
    steps_lfw: int
    n_images: int
    speed: dict  # steps_to_match, or {} without validation logs
    scratch: pd.DataFrame  # val.csv of the from-scratch aging run
    tuned: pd.DataFrame  # val.csv of the fine-tuned one
    seconds: float
    command: str = ""  # the command line that made it (set by the caller)

    @property
    def table(self) -> pd.DataFrame:
        """One :func:`comparison_row` per compared pair."""
        return pd.DataFrame([comparison_row(a, b, result) for (a, b), result in self.comparisons.items()])

    def comparison_lines(self) -> list[str]:
        """One line per pair: layers sharing more filters than chance, matched |cos| and CKA beside chance."""
        return [f"{r['a']} vs {r['b']}: {r['layers_more_than_chance']}/{r['layers']} layers share more filters than "
                f"chance; matched |cos| {r['matched_mean']:.3f} vs chance {r['chance_mean']:.3f}; "
                f"CKA {r['cka_mean']:.3f} vs chance {r['cka_chance_mean']:.3f}" for r in self.table.to_dict("records")]

    def to_dict(self) -> dict:
        return {"command": self.command, "config": self.model, "aging_run": self.aging_run,
                "steps_aging": self.steps_aging, "steps_pretrain": self.steps_pretrain, "steps_lfw": self.steps_lfw,
                "n_images": self.n_images, "comparisons": self.table.to_dict(orient="records"),
                "fine_tuning_speed": self.speed,
                "validation": {"scratch": self.scratch.to_dict(orient="records"),
                               "finetuned": self.tuned.to_dict(orient="records")},
                "seconds": self.seconds}

    def markdown(self) -> str:
        """summary.md: the comparison table, then fine-tuning against from scratch on the validation set."""
        both = pd.merge(self.scratch, self.tuned, on="step", how="outer", suffixes=("_scratch", "_finetuned"))
        lines = ["# Common filters of an aging generator (Genovese et al. 2019 replication)", "", "```",
                 self.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "```", "",
                 "## Fine-tuning vs from scratch (validation)", "", "```",
                 both.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "```", "",
                 f"steps to comparable quality: {self.speed}"]
        return "\n".join(lines)

    def save(self, out: str | Path) -> None:
        """Write ``compare/<a>-vs-<b>/`` (replaced), ``summary.json`` and ``summary.md`` into ``out``."""
        out = Path(out)
        for (a, b), result in self.comparisons.items():
            result.save(out / "compare" / f"{a}-vs-{b}", overwrite=True)
        summary = json.dumps(self.to_dict(), indent=2, default=str)
        atomic_write_bytes(out / "summary.json", lambda handle: handle.write(summary.encode()))
        markdown = self.markdown() + "\n"
        atomic_write_bytes(out / "summary.md", lambda handle: handle.write(markdown.encode()))
