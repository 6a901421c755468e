"""medseg-dfl: medical image segmentation with the Dual Focal Loss on MONAI."""

__version__ = "0.1.0"
