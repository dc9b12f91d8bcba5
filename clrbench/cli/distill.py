"""`clrbench distill`: a semi protocol's fine-tuned teacher -> a (smaller) student, SimCLRv2 sec 2."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from clrbench.cli.common import _guard, app, console, stdout


@app.command(
    epilog="Examples:\n\n"
    "  clrbench distill --teacher results/records/v2-1a2b3c4d/digits__semi-10pct.json"
    " --student resnet18,width=0.125,stem=cifar --task digits --epochs 30\n\n"
    "  clrbench distill --teacher .cache/clrbench/models/0123abcd.pt"
    " --student runs/quickstart-v2/last.pt --task digits --alpha 0.5\n\n"
    "  clrbench eval --checkpoint runs/distill/digits-resnet18-width-0.125-stem-cifar-a0-t1.pt --protocol linear"
)
@_guard
def distill(
    teacher: Annotated[str, typer.Option(help=(
        "A record of a semi protocol (its .json; the fine-tuned network it stored is the teacher) or the stored "
        "network (.pt under CACHE/models/)."))],
    student: Annotated[str, typer.Option(help=(
        "The student: an architecture (resnet18,width=0.25,stem=cifar: random init) or any --checkpoint spec (its "
        "encoder is the start). The teacher's architecture = self-distillation."))],
    task: Annotated[str, typer.Option(help=(
        "The task the teacher was fine-tuned on; the student trains on its train images without their labels."))],
    alpha: Annotated[float, typer.Option(help=(
        "Weight of the supervised loss on the teacher's labelled subset; 0 (S-v2's default) reads no label."))] = 0.0,
    temperature: Annotated[float, typer.Option(help="tau of the teacher's and student's softmax (S-v2 eq. 2).")] = 1.0,
    epochs: Annotated[float, typer.Option(help="Epochs over the task's train images (S-v2 sec 3: 400).")] = 400.0,
    batch_size: Annotated[int, typer.Option(help="Images per step (capped at the train split's size).")] = 256,
    lr_base: Annotated[float, typer.Option(help=(
        "LARS lr = LR_BASE x sqrt(batch), 5% warmup then cosine (S-v2 sec 3)."))] = 0.1,
    out: Annotated[str | None, typer.Option(help=(
        "Student checkpoint path (default runs/distill/TASK-STUDENT-aA-tT.pt)."))] = None,
    results: Annotated[Path, typer.Option(help=(
        "Results folder; the distill record goes to RESULTS/records/."))] = Path("results"),
    data_root: Annotated[str | None, typer.Option(help=(
        "Folder holding the datasets (default: $CLRBENCH_DATA)."))] = None,
    cache_dir: Annotated[str, typer.Option(help="Where the teacher's logits are cached.")] = ".cache/clrbench",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the image order and augmentation.")] = 0,
    precision: Annotated[str, typer.Option(help=(
        "auto (bf16 autocast where supported), bf16 or fp32 (use fp32 on CPUs without native bf16: emulated bf16 ran "
        "~9x slower)."))] = "auto",
) -> None:
    """Distil a fine-tuned teacher into a student on unlabelled task images (SimCLRv2 sec 2).

    Writes the student and a 'distill' record."""
    from clrbench.eval.distill_job import DistillConfig, run_distill

    cfg = DistillConfig(
        teacher,
        student,
        task,
        alpha,
        temperature,
        epochs,
        batch_size,
        lr_base,
        seed=seed,
        precision=precision,
        out=out,
        data_root=data_root or os.environ.get("CLRBENCH_DATA"),
        cache_dir=cache_dir,
        device=device,
    )
    console.print(
        f"Distilling {teacher} into {student} on {task} (alpha {alpha:g}, tau {temperature:g}, {epochs:g} epochs)."
    )
    rec, path = run_distill(cfg, results)
    tags = rec.tags["distill"]
    was = f" (teacher: {tags['teacher_test']:.2f})" if tags.get("teacher_test") is not None else ""
    stdout.print(f"Student [bold]{rec.checkpoint_id}[/]: {rec.metric} on {task} test {rec.value:.2f}{was}, "
                 f"{tags['steps']} steps. Checkpoint {path}.")
    stdout.print(f"Evaluate it like any encoder: clrbench eval --checkpoint {path} --tasks {task} --protocol linear")
