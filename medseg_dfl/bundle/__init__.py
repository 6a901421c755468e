"""MONAI bundles: export a medseg-dfl run as a bundle (``export_bundle``) and the post-processing
transforms that make the bundle's masks those of ``medseg-dfl infer``. The shipped training bundle
is ``bundles/blood_smear_dfl`` in the repository."""

from medseg_dfl.bundle.export import export_bundle, inference_config

__all__ = ["export_bundle", "inference_config"]
