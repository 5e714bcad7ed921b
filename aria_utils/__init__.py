"""Helpers for the ARIA lecture-4 notebooks: set-up, data, pretrained models, training, plots."""
from . import feedback, plot, transformer
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint, train_or_load
from .data import (ANIMAL_CLASSES, FASHION_CLASSES, DatasetNotFound, load_animal_mnist, load_dataset,
                   load_fashion_mnist, load_mnist_subset, load_photo, make_canvas, per_class_subset, to_float,
                   to_imagenet)
from .pretrained import HubUnavailable, from_hub, imagenet_classes, load_efficientnet_lite, top_k
from .record import record
from .setup import Config, by_speed, get_speed, hub_reachable, setup
from .training import (History, accuracy, classification_loss, extract_features, fit, knn_accuracy,
                       linear_probe, predict)

# The repository's address, written here only; notebooks' Colab cells are checked against it.
REPO_URL = "https://github.com/aria-m1/advanced-topics-notebooks"

__all__ = [
    "ANIMAL_CLASSES", "FASHION_CLASSES", "REPO_URL", "CheckpointError", "Config", "DatasetNotFound", "History",
    "HubUnavailable", "accuracy", "by_speed", "classification_loss", "extract_features", "fit", "from_hub",
    "get_speed", "hub_reachable", "imagenet_classes", "knn_accuracy", "linear_probe", "load_animal_mnist",
    "load_checkpoint", "load_dataset", "load_efficientnet_lite", "load_fashion_mnist", "load_mnist_subset",
    "load_photo", "make_canvas", "per_class_subset", "predict", "record", "save_checkpoint", "setup",
    "to_float", "to_imagenet", "top_k", "train_or_load",
]
