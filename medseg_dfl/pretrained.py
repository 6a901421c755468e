"""Models that ship with the package, by name: ``medseg-dfl count SMEARS/ OUT/`` with no model, and
``infer blood-smear IN OUT``, use them offline (nothing is downloaded).

Each model is a weights-only checkpoint in ``medseg_dfl/models/`` beside its model card
(``<file stem>.md``: data, classes, scale, training command, measured scores, licence). A name that
is also an existing path is read as the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_SMEAR_MODEL", "PRETRAINED", "PretrainedModel", "model_card", "resolve_model"]


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    file: str  # in medseg_dfl/models/
    summary: str


PRETRAINED: dict[str, PretrainedModel] = {
    model.name: model
    for model in (
        PretrainedModel(
            name="blood-smear",
            file="blood_smear.pt",
            summary="2D RGB blood smears: background, red cells, white cells, platelets (BCCD, MIT licence)",
        ),
    )
}
DEFAULT_SMEAR_MODEL = "blood-smear"


def _packaged(model: PretrainedModel) -> Path:
    return Path(str(resources.files("medseg_dfl") / "models" / model.file))


def resolve_model(name_or_path: str | Path) -> Path:
    """The checkpoint of a shipped model's name, or ``name_or_path`` itself when it exists or is not
    a shipped name (the caller checks files). ``FileNotFoundError`` for a shipped name whose file is
    missing from this installation."""
    path = Path(name_or_path)
    model = PRETRAINED.get(str(name_or_path))
    if path.exists() or model is None:
        return path
    packaged = _packaged(model)
    if not packaged.is_file():
        raise FileNotFoundError(f"the shipped model {model.name!r} is missing from this installation ({packaged})")
    return packaged


def model_card(name: str) -> Path:
    """The model card (markdown) of a shipped model."""
    try:
        model = PRETRAINED[name]
    except KeyError:
        raise ValueError(f"unknown shipped model {name!r} (shipped: {', '.join(PRETRAINED)})") from None
    return _packaged(model).with_suffix(".md")
