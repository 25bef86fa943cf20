"""Checkpoints that hold no pickles: tensors in safetensors files, everything else in JSON.

A run folder may come from someone else; resuming it must not run its code, and a pickle
(Accelerate's own checkpoint format, ``torch.load(weights_only=False)``) can. So the run
writes, into ``checkpoint/``:

  model.safetensors                 the model's parameters and buffers
  state.json + state.safetensors    optimiser, scheduler, progress, the method's ``run.state``
  rng_<process>.json (+ .safetensors)  each process's Python, numpy and torch RNG states

Nested state is split by ``encode``: tensors and arrays go to the safetensors file under
their path; dicts with non-string keys, tuples, numpy scalars and the rest to JSON with
small tags (``{"__tensor__": key}``, ``{"__items__": [[k, v], ...]}``, ``{"__tuple__": [...]}``).
Reading never unpickles: safetensors and JSON only. A checkpoint is read as if it came from
anyone: weights of another shape, a truncated or renamed file, a ``state.json`` whose
progress says -5 epochs are done, fail in one line naming the file (``check_state``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from noisybench.errors import ConfigError

MODEL_FILE = "model.safetensors"
STATE_FILE = "state"


def encode(value: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """A JSON-able tree of ``value``; its tensors and arrays are moved into ``tensors``."""
    if torch.is_tensor(value):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": path}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: encode(v, tensors, f"{path}/{k}") for k, v in value.items()}
        return {"__items__": [[k, encode(v, tensors, f"{path}/{i}")] for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint {type(value).__name__} at '{path}': use tensors, arrays, numbers, "
                    "strings, lists and dicts in run.state")


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``encode``."""
    if isinstance(tree, dict):
        if "__tensor__" in tree:  # a fresh, aligned copy: BLAS may round unaligned inputs differently
            return tensors[tree["__tensor__"]].clone()
        if "__ndarray__" in tree:
            return tensors[tree["__ndarray__"]].clone().numpy()
        if "__items__" in tree:
            return {k: decode(v, tensors) for k, v in tree["__items__"]}
        if "__tuple__" in tree:
            return tuple(decode(v, tensors) for v in tree["__tuple__"])
        return {k: decode(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [decode(v, tensors) for v in tree]
    return tree


def write_tree(folder: Path, stem: str, value: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = encode(value, tensors)
    save_file(tensors, str(folder / f"{stem}.safetensors"))
    (folder / f"{stem}.json").write_text(json.dumps(tree))


def read_tree(folder: Path, stem: str) -> Any:
    for suffix in (".json", ".safetensors"):
        if not (folder / f"{stem}{suffix}").is_file():
            raise ConfigError(f"{folder}: no {stem}{suffix}; not a checkpoint this noisybench wrote "
                              "(checkpoints of noisybench before 0.2 held pickles and are not read, as reading "
                              "them could run code)")
    try:
        return decode(json.loads((folder / f"{stem}.json").read_text()), load_file(str(folder / f"{stem}.safetensors")))
    except (OSError, ValueError, KeyError, TypeError, RecursionError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{folder / stem}.json/.safetensors: not a checkpoint this noisybench wrote ({reason})") from None


class SavedProgress(BaseModel):
    """The parts of a checkpoint's progress a resumed run counts on, checked before it is used."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)
    epochs_done: int = Field(ge=0, le=10**6, strict=True)
    history: list[dict]
    best_val: dict
    epoch_seconds: list[float]
    phase_seconds: dict[str, float]
    method_state: dict

    @model_validator(mode="after")
    def one_entry_per_epoch(self) -> "SavedProgress":
        if len(self.history) != self.epochs_done:
            raise ValueError(f"epochs_done {self.epochs_done} but {len(self.history)} epochs in its history")
        return self


class SavedState(BaseModel):
    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)
    optimizer: dict
    scheduler: dict
    networks: dict = {}
    progress: SavedProgress
    scaler: dict | None = None


def check_state(state: Any, folder: Path) -> None:
    """Refuse a state.json that this noisybench could not have written, naming its first fault."""
    try:
        SavedState.model_validate(state)
        for name, optimizer in [("optimizer", state["optimizer"]), *state.get("networks", {}).items()]:
            if not isinstance(optimizer, dict) or not {"state", "param_groups"} <= set(optimizer):
                raise ValueError(f"{name}: not an optimizer's state")
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the top level"
        raise ConfigError(f"{folder / STATE_FILE}.json: {where}: {error['msg'].removeprefix('Value error, ')}; "
                          "not a checkpoint this noisybench wrote") from None
    except ValueError as exc:
        raise ConfigError(f"{folder / STATE_FILE}.json: {exc}; not a checkpoint this noisybench wrote") from None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}, str(path))


def network_file(name: str) -> str:
    return f"network_{name}.safetensors"


def save_models(folder: Path, accelerator: Any, model: torch.nn.Module,
                networks: dict[str, torch.nn.Module] | None = None) -> None:
    """``model.safetensors`` and one ``network_<name>.safetensors`` per further network."""
    save_weights(folder / MODEL_FILE, accelerator.unwrap_model(model).state_dict())
    for name, network in (networks or {}).items():
        save_weights(folder / network_file(name), accelerator.unwrap_model(network).state_dict())


def load_models(folder: Path, accelerator: Any, model: torch.nn.Module,
                networks: dict[str, torch.nn.Module] | None = None) -> None:
    """The weights ``save_models`` wrote, into ``model`` and ``networks``."""
    load_model(folder, accelerator.unwrap_model(model))
    for name, network in (networks or {}).items():
        load_model(folder, accelerator.unwrap_model(network), network_file(name))


def save(folder: Path, accelerator: Any, model: torch.nn.Module, state: dict[str, Any],
         networks: dict[str, torch.nn.Module] | None = None) -> None:
    """Write a checkpoint into ``folder`` (every process calls it; the main one writes the
    shared files, each process its RNG state). ``networks``: a method's further networks,
    one weights file each."""
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    try:
        if accelerator.is_main_process:
            save_models(folder, accelerator, model, networks)
            write_tree(folder, STATE_FILE, state)
        write_tree(folder, f"rng_{accelerator.process_index}", rng_state())
    except (OSError, SafetensorError) as exc:  # disk full, read-only: the last complete checkpoint stays
        raise OSError(getattr(exc, "errno", None), f"cannot write the checkpoint: {str(exc).splitlines()[0]}",
                      str(folder)) from None


def load_model(folder: Path, model: torch.nn.Module, file: str = MODEL_FILE) -> None:
    """The model weights of a checkpoint (safetensors: nothing is unpickled); ``file``: a
    further network's (``network_file(name)``)."""
    path = folder / file
    if not path.is_file():
        raise ConfigError(f"{folder}: no {file}; not a checkpoint this noisybench wrote (or not of this method)")
    device = next(model.parameters()).device
    load_weights(model, path, str(device))


def load_weights(model: torch.nn.Module, path: Path, device: str = "cpu") -> None:
    """The safetensors file ``path`` into ``model``; a file that is not one, or holds weights of
    another model or shape, fails naming it."""
    try:
        weights = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{path}: not a safetensors file of weights ({' '.join(str(exc).split())[:200]})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise ConfigError(f"{path}: does not fit the run's model ({first[:200]})") from None


def load(folder: Path, accelerator: Any, model: torch.nn.Module,
         networks: dict[str, torch.nn.Module] | None = None) -> dict[str, Any]:
    """Load the weights into ``model`` (and ``networks``), restore this process's RNG, return
    the saved state."""
    load_models(folder, accelerator, model, networks)
    state = read_tree(folder, STATE_FILE)
    check_state(state, folder)
    rng = folder / f"rng_{accelerator.process_index}.json"
    if rng.is_file():  # a checkpoint of fewer processes has none for this one: refused later, by the experiment
        try:
            set_rng_state(read_tree(folder, f"rng_{accelerator.process_index}"))
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"{rng}: not a random state this noisybench wrote ({str(exc)[:200]})") from None
    return state
