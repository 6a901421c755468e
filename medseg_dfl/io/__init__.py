"""Image I/O: readers by suffix (MONAI ``LoadImage``), pairing, validation, geometry-keeping writers."""

from medseg_dfl.io.checks import PairStats, validate_pair
from medseg_dfl.io.errors import DataError
from medseg_dfl.io.geometry import ImageGeometry, read_geometry
from medseg_dfl.io.pairing import CasePair, discover_pairs, find_images, split_pairs
from medseg_dfl.io.readers import (
    IMAGE_SUFFIXES,
    SimpleITKReader,
    TifffileReader,
    file_suffix,
    image_readers,
    load_image,
    load_transforms,
)
from medseg_dfl.io.writers import atomic_path, output_name, write_mask_like, write_probabilities_like

__all__ = [
    "IMAGE_SUFFIXES",
    "CasePair",
    "DataError",
    "ImageGeometry",
    "PairStats",
    "SimpleITKReader",
    "TifffileReader",
    "atomic_path",
    "discover_pairs",
    "file_suffix",
    "find_images",
    "image_readers",
    "load_image",
    "load_transforms",
    "output_name",
    "read_geometry",
    "split_pairs",
    "validate_pair",
    "write_mask_like",
    "write_probabilities_like",
]
