"""``noisybench predict``: a trained run's model on a user's new images.

The model is rebuilt from the run folder alone (``model.json``, written when the run
starts: architecture, classes, input channels, normalisation and image size), with the
weights of ``best/`` (the best val epoch) or ``checkpoint/`` (the last), and the run's
evaluation pipeline (photos: short edge, centre crop; small images: a square resize).
Input: a folder (every image under it, sorted) or a CSV with a ``path`` column (relative to
the CSV) and optionally ``label`` (class name or id). Output, one row per image: the
predicted class and every class's probability; with labels, the label and its noise score,
1 − p(label) (the model's disbelief in the given label: cleanlab's self-confidence score,
turned round so that higher is more suspect).

The run folder may come from anyone: ``model.json`` is checked (``ModelCard``) before a
network is built from it (``num_classes: 10**9`` would allocate 256 GB), and weights that
are not a safetensors file of the model's shapes fail naming the file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from noisybench import records
from noisybench.checkpoint import MODEL_FILE, load_weights
from noisybench.errors import ConfigError, DataError
from noisybench.inputs import MIB, NotRegular, read_bytes, read_text

WEIGHTS = {"best": records.BEST_DIR, "last": records.CHECKPOINT_DIR}


class ModelCard(BaseModel):
    """What a run's model.json must hold for predict to rebuild its model."""

    model_config = ConfigDict(extra="allow", strict=True)
    method: str
    networks: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]] = []
    model: str
    num_classes: int = Field(ge=2, le=1_000_000)
    class_names: list[str]
    channels: Literal[1, 3]
    normalization: list[list[float]] | None
    input_size: int = Field(ge=1, le=8192)
    image_size: Annotated[int, Field(ge=8, le=8192)] | None = None

    @model_validator(mode="after")
    def consistent(self) -> "ModelCard":
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for num_classes {self.num_classes}")
        if self.normalization is not None and [len(v) for v in self.normalization] != [self.channels] * 2:
            raise ValueError("normalization is not (mean, std) with one value per channel")
        return self


def read_card(path: Path) -> dict[str, Any]:
    """``model.json``, checked: one line naming the file and its first fault otherwise."""
    try:
        card = json.loads(read_text(path, MIB, "model card"))
        ModelCard.model_validate(card)
    except (ValueError, RecursionError, NotRegular) as exc:
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            reason = f"{where + ': ' if where else ''}{error['msg'].removeprefix('Value error, ')}"
        else:
            reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{path}: not a model card noisybench wrote ({reason})") from None
    return card


class Host:
    """The little of an Accelerator the evaluation hook may use outside a run."""

    @staticmethod
    def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
        return model


def rebuild(card: dict[str, Any], config: dict[str, Any], weights: Path, device: torch.device) -> torch.nn.Module:
    """A network of the run's architecture and input normalisation with the weights in
    ``weights``, in eval mode on ``device``."""
    from noisybench.models import create_model

    normalization = None if card["normalization"] is None else tuple(tuple(v) for v in card["normalization"])
    model = create_model(dict(config["model"], pretrained=False, pretrained_file=None), card["num_classes"],
                         card["channels"], normalization)
    load_weights(model, weights)
    return model.eval().to(device)


def read_run(run_dir: Path, weights: str) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(the run's model card, its config, the folder of the chosen weights)."""
    from noisybench.config import load_yaml

    card_path = run_dir / records.MODEL_CARD
    if not card_path.is_file():
        raise ConfigError(f"{run_dir}: no {records.MODEL_CARD}; not a run folder (or one from before predict existed)")
    card = read_card(card_path)
    folder = run_dir / WEIGHTS[weights]
    if not (folder / MODEL_FILE).is_file():
        why = "no epoch had a val accuracy (a dataset without val split?)" if weights == "best" else "no checkpoint"
        raise ConfigError(f"{run_dir}: no {WEIGHTS[weights]}/{MODEL_FILE} ({why}); try --weights "
                          f"{'last' if weights == 'best' else 'best'}")
    return card, load_yaml(run_dir / records.CONFIG_FILE), folder


def evaluator(card: dict[str, Any], config: dict[str, Any], folder: Path, device: torch.device):
    """``images -> logits`` as the run evaluated: the model's, or for a method with further
    networks its ``noisybench_eval_logits`` over the model and those networks."""
    from noisybench.checkpoint import network_file
    from noisybench.plugins import make_plugin_manager
    from noisybench.run import Network

    model = rebuild(card, config, folder / MODEL_FILE, device)
    if not card.get("networks"):
        return lambda images: model(images)[0]
    networks = {name: Network(rebuild(card, config, folder / network_file(name), device), None)
                for name in card["networks"]}
    run = SimpleNamespace(model=model, networks=networks, accelerator=Host(), config=config,
                          method=card["method"], options=config.get(card["method"], {}))
    hook = make_plugin_manager(card["method"]).hook
    return lambda images: hook.noisybench_eval_logits(run=run, images=images, logits=model(images)[0])


def read_input(source: Path, class_names: list[str]) -> tuple[list[str], np.ndarray | None]:
    """(image paths, labels as ids or None) from a folder or a CSV."""
    from noisybench.datasets.images import IMAGE_EXTENSIONS
    from noisybench.datasets.user import MANIFEST_LIMIT

    if source.is_dir():
        paths = sorted(str(p) for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))
        if not paths:
            raise DataError(f"--input {source}: no images in it")
        return paths, None
    if not source.exists():
        raise DataError(f"--input {source}: no such folder or CSV file")
    try:
        raw = read_bytes(source, MANIFEST_LIMIT, "CSV file")
        table = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (NotRegular, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "empty" if isinstance(
            exc, pd.errors.EmptyDataError) else str(exc).splitlines()[0]
        raise DataError(f"--input {source}: not a CSV table of images ({why.removeprefix(f'{source}: ')})") from None
    if "path" not in table:
        raise DataError(f"--input {source}: expected a CSV with a 'path' column (and optionally 'label')")
    paths = [os.path.abspath(source.parent / p) for p in table["path"]]  # not resolved: a link loop is unreadable
    if "label" not in table:
        return paths, None
    ids = {name: i for i, name in enumerate(class_names)}
    labels = []
    for line, value in enumerate(table["label"], 2):
        if value in ids:
            labels.append(ids[value])
        elif value.isdigit() and int(value) < len(class_names):
            labels.append(int(value))
        else:
            raise DataError(f"{source}:{line}: label '{value}' is neither a class of the run nor an id "
                            f"0..{len(class_names) - 1}")
    return paths, np.asarray(labels, dtype=np.int64)


def eval_files(card: dict[str, Any], paths: list[str]):
    """The run's evaluation pipeline over ``paths``, as ImageFiles."""
    from torchvision.transforms import v2

    from noisybench.datasets.images import ImageFiles, photo_transform, pipeline_short_edge

    size = card["image_size"] or card["input_size"]
    transform = photo_transform(size, train=False)
    if card["channels"] == 1:
        transform = v2.Compose([transform, v2.Grayscale(1)])
    edge = pipeline_short_edge(size)
    files = ImageFiles(paths, np.zeros(len(paths)), transform, "scaled", draft_size=edge, fallback_size=(edge, edge))
    if card["normalization"] is not None:
        files.set_fill(card["normalization"][0])
    return files


@torch.no_grad()
def predict(run_dir: str | Path, source: str | Path, weights: str = "best", batch_size: int = 256,
            workers: int = 0) -> pd.DataFrame:
    run_dir, source = Path(run_dir), Path(source)
    card, config, folder = read_run(run_dir, weights)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    evaluate = evaluator(card, config, folder, device)
    paths, labels = read_input(source, card["class_names"])
    files = eval_files(card, paths)
    loader = torch.utils.data.DataLoader(files, batch_size=batch_size, num_workers=workers)
    probabilities = []
    for images, *_ in loader:
        logits = evaluate(images.to(device))
        probabilities.append(torch.softmax(logits.float(), dim=1).cpu())
    probs = torch.cat(probabilities).numpy()
    names = np.asarray(card["class_names"], dtype=object)
    predicted = probs.argmax(axis=1)
    table = pd.DataFrame({"path": paths, "predicted_label": predicted, "predicted_class": names[predicted]})
    if labels is not None:
        table["label"] = labels
        table["label_class"] = names[labels]
        table["noise_score"] = 1.0 - probs[np.arange(len(labels)), labels]
    table["unreadable"] = files.corrupt.numpy().astype(int)
    for c, name in enumerate(card["class_names"]):
        table[f"p_{name}"] = probs[:, c]
    return table


def summary(table: pd.DataFrame, output: Path, weights: str) -> str:
    line = f"predicted {len(table)} images with the {weights} weights into {output}"
    if "label" in table:
        accuracy = float((table["predicted_label"] == table["label"]).mean())
        line += f"; accuracy against the given labels {accuracy:.4f}"
    if table["unreadable"].any():
        line += f"; {int(table['unreadable'].sum())} unreadable (scored as a blank image)"
    return line
