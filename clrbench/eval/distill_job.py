"""``clrbench distill``: teacher (a semi protocol's fine-tuned network) -> student checkpoint + record.

The teacher is the network a semi-supervised protocol stored for its selected trial
(:mod:`clrbench.eval.finetune.stored`), named by that record (its ``tags.model``) or by the
stored file. The student is any ``--checkpoint`` spec: ``random:<arch>,...`` (or a bare
``resnet18,width=0.25,stem=cifar``) trains from scratch, a pretrained checkpoint starts from
its encoder; the same architecture as the teacher is self-distillation (S-v2 sec 2). Training
follows S-v2 sec 3 for distillation: the pretraining schedule (LARS, lr 0.1 x sqrt(batch),
5% warmup then cosine, weight decay 1e-4), random crop + flip only, 400 epochs by default.

Outputs: the student as a clrbench checkpoint (encoder keys as pretraining writes them, its
classifier, and ``distill`` provenance that every later record of it carries in
``checkpoint.distill``), and a record of protocol ``distill`` (the student's own classifier on
test) whose tags name the teacher, the student spec, alpha and tau.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clrbench.eval.jobs import EvalError, EvalJob, load_job_task, make_record, test_stderr
from clrbench.records import Record


@dataclass(frozen=True)
class DistillConfig:
    teacher: str  # a semi record (.json) or a stored fine-tuned model (.pt)
    student: str  # a --checkpoint spec, or a bare architecture spec for random init
    task: str
    alpha: float = 0.0  # weight of the supervised loss on the teacher's labelled subset
    temperature: float = 1.0  # tau of both softmaxes
    epochs: float = 400.0  # S-v2 sec 3
    batch_size: int = 256
    lr_base: float = 0.1  # lr = lr_base x sqrt(batch), as S-v2 pretraining
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    seed: int = 0
    precision: str = "auto"
    out: str | None = None  # the student checkpoint; default runs/distill/<name>.pt
    data_root: str | None = None
    cache_dir: str = ".cache/clrbench"
    tasks_dir: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.temperature <= 0:
            raise EvalError("--alpha must be >= 0 and --temperature > 0.")
        if self.epochs <= 0 or self.batch_size < 1 or self.lr_base <= 0:
            raise EvalError("--epochs, --batch-size and the learning rate must be positive.")


def student_spec(spec: str) -> str:
    """``resnet18,width=0.25`` (no scheme, no such file) -> ``random:resnet18,width=0.25``."""
    return spec if ":" in spec or Path(spec).exists() else f"random:{spec}"


def resolve_teacher(spec: str) -> tuple[Any, Record | None]:
    """(stored model, the record that named it or None) for ``--teacher``."""
    from clrbench.eval.finetune.stored import load_model
    from clrbench.records import read_record

    if spec.endswith(".json"):
        record = read_record(spec)
        model = record.tags.get("model") if isinstance(record.tags.get("model"), dict) else None
        if model is None:
            raise EvalError(f"{spec} is a {record.protocol} record without a stored fine-tuned model; the teacher "
                            "must come from a semi protocol (e.g. clrbench eval --protocol semi-10pct).")
        return load_model(model["path"]), record
    return load_model(spec), None


def teacher_logits(teacher: Any, images: Any, sizes: Any, cache_dir: str, key: str, device: str) -> np.ndarray:
    """(n, C) teacher logits on the test-time view of every image, computed once and cached."""
    from clrbench.eval.finetune.images import EvalImages, eval_loader
    from clrbench.eval.finetune.trainer import input_scaler

    path = Path(cache_dir) / "distill" / f"teacher-{key[:24]}.npy"
    if path.exists():
        return np.load(path)
    dev = torch.device(device)
    net, scale = teacher.net.to(dev).eval(), input_scaler(teacher.meta, dev)
    out = []
    with torch.no_grad():
        for x, _ok in eval_loader(EvalImages(images, sizes), 256, dev):
            out.append(net(scale(x)).float().cpu().numpy())
    logits = np.concatenate(out)
    from clrbench.atomic import atomic_file

    with atomic_file(path) as f:
        np.save(f, logits)
    return logits


def _scores(net: torch.nn.Module, meta: dict[str, Any], images: Any, sizes: Any, device: str) -> np.ndarray:
    from clrbench.eval.finetune.images import EvalImages, eval_loader
    from clrbench.eval.finetune.trainer import input_scaler

    dev = torch.device(device)
    scale, out = input_scaler(meta, dev), []
    with torch.no_grad():
        for x, _ok in eval_loader(EvalImages(images, sizes), 256, dev):
            out.append(net.to(dev).eval()(scale(x)).float().cpu().numpy())
    return np.concatenate(out)


def run_distill(cfg: DistillConfig, results: Path) -> tuple[Record, Path]:
    """Distil the teacher into the student on ``cfg.task``; write the student and its record."""
    from clrbench.records import write_record

    rec, out = distill_student(cfg)
    write_record(results, rec)
    return rec, out


def distill_student(cfg: DistillConfig, teacher_test: float | None = None) -> tuple[Record, Path]:
    """Distil the teacher into the student on ``cfg.task``; write the student, return its record
    (not written) and the student's path. ``teacher_test`` is the teacher's test metric when the
    caller holds it instead of a record file (the label-efficiency study)."""
    from clrbench.eval.distill import DistillSpec, train_student
    from clrbench.eval.finetune.images import ImageSizes
    from clrbench.eval.finetune.trainer import steps_per_epoch
    from clrbench.eval.metrics import score
    from clrbench.weights.adapters import load_encoder

    t0 = time.time()
    teacher, teacher_record = resolve_teacher(cfg.teacher)
    card, data = load_job_task(
        EvalJob(cfg.student, "", cfg.task, "distill", cfg.data_root, cfg.cache_dir, cfg.tasks_dir)
    )
    info = teacher.info
    if info.get("task") != card.name or info.get("split_hash") != data.split_hash:
        raise EvalError(f"the teacher was fine-tuned on {info.get('task')} (split {str(info.get('split_hash'))[:8]}), "
                        f"not on this {card.name} (split {data.split_hash[:8]}); distil on the teacher's task.")
    if card.multilabel:
        raise EvalError(f"{card.name} is multi-label; distillation matches softmax class distributions (S-v2 eq. 2).")
    sizes = ImageSizes(**info["sizes"])
    key = hashlib.sha256(json.dumps([teacher.sha256, f"{card.name}@{card.version}", data.split_hash,
                                     asdict(sizes)]).encode()).hexdigest()
    logits = teacher_logits(teacher, data.train, sizes, cfg.cache_dir, key, cfg.device)
    student = load_encoder(student_spec(cfg.student))
    batch = min(cfg.batch_size, len(data.train))
    steps = max(1, math.ceil(cfg.epochs * steps_per_epoch(len(data.train), batch)))
    spec = DistillSpec(steps=steps, batch_size=batch, lr=cfg.lr_base * math.sqrt(batch),
                       warmup_steps=round(cfg.warmup_fraction * steps), weight_decay=cfg.weight_decay, momentum=0.9,
                       temperature=cfg.temperature, alpha=cfg.alpha, train_crop=sizes.train_crop,
                       crop_scale=(0.08, 1.0), precision=cfg.precision, seed=cfg.seed)
    labelled = data.train.subset(np.asarray(info["subset"])) if cfg.alpha > 0 else None
    net, stats = train_student(student.module, int(student.meta["feature_dim"]), student.meta, data.train, logits,
                               spec, labelled, cfg.device)
    provenance_tags = {"teacher": teacher_id(teacher), "teacher_model": str(teacher.path),
                       "teacher_checkpoint": info.get("checkpoint_id"), "teacher_protocol": info.get("protocol"),
                       "teacher_test": teacher_record.value if teacher_record else teacher_test,
                       "student": cfg.student, "alpha": cfg.alpha, "temperature": cfg.temperature,
                       "epochs": cfg.epochs, "steps": steps, "task": card.name}
    out = (
        Path(cfg.out)
        if cfg.out
        else Path("runs") / "distill" / f"{card.name}-{_slug(cfg.student)}-a{cfg.alpha:g}-t{cfg.temperature:g}.pt"
    )
    save_student(out, net, student.meta, provenance_tags)
    sid = load_encoder(str(out)).checkpoint_id
    test, val = (
        _scores(net, student.meta, data.test, sizes, cfg.device),
        _scores(net, student.meta, data.val, sizes, cfg.device),
    )
    value = 100.0 * score(card.metric, data.test.targets, test)
    pred = test.argmax(1)
    # A distill record has no protocol file: version 1 of the procedure in this module.
    rec = replace(make_record(
        sid, card.name, "distill", card=card, status="ok", value=value,
        stderr=test_stderr(data.test.targets, pred, False, value),
        checkpoint={**student.describe(), "path": str(out), "distill": provenance_tags},
        hparams={**asdict(spec), "lr_base": cfg.lr_base},
        val_curve=[[cfg.temperature, 100.0 * score(card.metric, data.val.targets, val)]],
        predictions={"y": data.test.targets.tolist(), "pred": pred.tolist()},
        split_sizes={"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        split_hash=data.split_hash,
        timings={"train_s": stats["seconds"], "total_s": round(time.time() - t0, 3), "final_loss": stats["final_loss"]},
        tags={"distill": provenance_tags},
    ), protocol_version=1)
    return rec, out


def teacher_id(teacher: Any) -> str:
    """The teacher's name in records: base checkpoint id, protocol and the weights' hash."""
    return f"{teacher.info.get('checkpoint_id')}/{teacher.info.get('protocol')}/{teacher.sha256[:12]}"


def save_student(path: Path, net: Any, meta: dict[str, Any], distill: dict[str, Any]) -> None:
    """A clrbench checkpoint (``encoder.*`` keys, encoder metadata) plus the classifier and provenance."""
    from clrbench.provenance import version_info
    from clrbench.weights.checkpoint import FORMAT, FORMAT_VERSION, atomic_torch_save

    model = {f"encoder.{k}": v.detach().cpu() for k, v in net.encoder.state_dict().items()}
    clean = {k: v for k, v in meta.items() if k not in ("distill", "feature_layer")}
    atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION, "model": model, "encoder": clean,
                       "classifier": {k: v.detach().cpu() for k, v in net.head.state_dict().items()},
                       "distill": distill, "config": {}, **version_info()}, path)


def _slug(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in spec.split(":")[-1])[:48].strip("-")
