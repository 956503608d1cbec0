"""Is the baseline-vs-reasoning comparison controlled? The two models may differ ONLY in the target.

Two things make a comparison uncontrolled, and both are checked here, once, for the configs
(before training: tests, preflight) and for what the trainings recorded (after: evaluate):

- the Axolotl configs of stage 2 and the baseline differ in anything but their paths, or
  use sample packing, which packs rows by tokens so that the number of optimizer updates
  follows the token count (stage-2 rows are ~3x longer: ~3x more updates);
- the two trainings saw different example ids, ran a different number of optimizer steps
  or put a different number of examples in a step.
"""
from __future__ import annotations

PAIR = ("stage2", "baseline")
# Keys that name where a run reads and writes: they must differ between the two.
PATH_KEYS = ("datasets.0.path", "dataset_prepared_path", "output_dir", "wandb_name")
# What the trainings record (pipeline/train.py run_training) that must be equal.
RECORDED = {"ids_sha256": "example ids", "rows_trained": "rows trained", "optimizer_steps": "optimizer steps",
            "examples_per_step": "examples per optimizer step", "epochs": "epochs"}


def _flat(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                out.update(_flat(v, f"{name}.{i}."))
        else:
            out[name] = value
    return out


def portable_config(cfg: dict) -> dict:
    """An Axolotl config flattened (`datasets.0.type`) without the keys that name paths: two runs
    whose portable configs are equal train alike on whatever data their paths hold."""
    return {k: v for k, v in _flat(cfg).items() if k not in PATH_KEYS}


def config_differences(stage2: dict, baseline: dict) -> list[str]:
    """Why two Axolotl configs would not give a controlled comparison ([] when they would)."""
    a, b = portable_config(stage2), portable_config(baseline)
    reasons = [f"config key {k!r} differs: stage2 {a.get(k)!r}, baseline {b.get(k)!r}"
               for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    reasons += [f"{which} uses sample_packing: optimizer steps then follow the token count, not the rows"
                for which, cfg in zip(PAIR, (stage2, baseline)) if cfg.get("sample_packing")]
    return reasons


def training_differences(stage2: dict, baseline: dict) -> list[str]:
    """Why two recorded trainings (manifest infos of train-stage2 / train-baseline) differ
    in anything but the target ([] when they do not)."""
    reasons = []
    for key, what in RECORDED.items():
        a, b = stage2.get(key), baseline.get(key)
        if a is None or b is None:
            reasons.append(f"{what}: not recorded for {'stage2' if a is None else 'baseline'}")
        elif a != b:
            reasons.append(f"{what} differ: stage2 {a}, baseline {b}")
    return reasons
