"""How long each trial pretrains: named presets, a step count, or an epoch count.

A budget is a set of ``--set`` overrides applied after the base recipe and before the grid
point (style.md §3.7: a sweep is a list of override sets). The ``laptop`` preset is the
default: the embedded images on a 2-core CPU, sized so the augmentation study (49 trials)
takes about 30 minutes and the others less. ``paper`` trains 100 epochs per trial, the
length of every ablation in S-v1 (sec. 2.3; protocol.md §4.6), for a GPU recipe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clrbench.config import ConfigError


@dataclass(frozen=True)
class Budget:
    """A named set of overrides that fixes the cost of one trial."""

    name: str
    overrides: tuple[str, ...]
    about: str


# 4,096 embedded images at batch 128 (32 steps per epoch). The augmentation study gets the
# shortest runs because it has the most trials (len(ops)**2).
_LAPTOP_DATA = ("data.num_images=4096", "optim.batch_size_global=128")
_LAPTOP_STEPS = {"augment": 100, "temperature": 300, "batch-size": None, "head": 200, "label-efficiency": 100}
# label-efficiency trains width-1 ResNets on a CPU, and fine-tunes and distils them too: fp32,
# since bf16 autocast on a CPU without native bf16 ran a training step ~8x slower (docs/simclrv2.md).
_LAPTOP_EXTRA = {"label-efficiency": ("run.precision=fp32",)}

# Tests and a first try of a command: a tiny encoder on 16 px views, 2 steps.
SMOKE = ("model.width=0.125", "model.head_dim=16", "augment.image_size=16", "data.num_images=256",
         "optim.batch_size_global=32", "run.precision=fp32")


def presets(study: str) -> dict[str, Budget]:
    """The named budgets of ``study`` (``batch-size`` takes its length from ``--epochs``)."""
    steps = _LAPTOP_STEPS[study]
    laptop = _LAPTOP_DATA + ((f"optim.steps={steps}",) if steps else ()) + _LAPTOP_EXTRA.get(study, ())
    smoke = SMOKE + (("optim.steps=2",) if steps else ())
    what = f"{steps} steps" if steps else "--epochs epochs"
    return {
        "laptop": Budget("laptop", laptop, f"{what} of batch 128 on 4,096 embedded images (CPU)"),
        "smoke": Budget("smoke", smoke, f"a {'--widths' if study == 'label-efficiency' else 'width-0.125'} ResNet-18 "
                        "on 16 px views, 2 steps (tests)"),
        "paper": Budget("paper", ("optim.steps=null", "optim.epochs=100.0") if steps else (),
                        "100 epochs per trial, as every ablation of S-v1 (for a GPU recipe)"),
        "recipe": Budget("recipe", (), "the base recipe's own length"),
    }


def parse_budget(text: str, study: str) -> Budget:
    """``laptop`` | ``smoke`` | ``paper`` | ``recipe`` | ``N`` (steps) | ``Nep`` (epochs).

    Raises:
        ConfigError: anything else, naming the accepted forms.
    """
    named = presets(study)
    text = text.strip()
    if text in named:
        return named[text]
    if re.fullmatch(r"[1-9][0-9]*", text):
        return Budget(f"{text}steps", (f"optim.steps={int(text)}",), f"{text} steps per trial")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ep|epochs?)", text)
    if m and float(m.group(1)) > 0:
        ep = float(m.group(1))
        return Budget(f"{ep:g}ep", ("optim.steps=null", f"optim.epochs={ep!r}"), f"{ep:g} epochs per trial")
    raise ConfigError(f"--budget {text!r} is not a preset ({', '.join(named)}), a step count (500) "
                      "or an epoch count (100ep).")
