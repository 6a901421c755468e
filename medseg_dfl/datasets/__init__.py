"""Public datasets by name: download (or read a local copy) and convert to a layout the project reads."""

from medseg_dfl.datasets._staging import FetchError
from medseg_dfl.datasets.registry import DATASETS, DatasetInfo, fetch_dataset, get_dataset, list_datasets

__all__ = ["DATASETS", "DatasetInfo", "FetchError", "fetch_dataset", "get_dataset", "list_datasets"]
