#!/usr/bin/env bash
# Set up (if needed) and run the demo: train with the Dual Focal Loss on sample_data/, then infer.
source "$(dirname "$0")/_env.sh"
python -m medseg_dfl.demo "$@"
