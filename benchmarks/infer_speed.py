"""Inference throughput and memory: `predict_folder` against a bare MONAI loop, in the same run.

    python benchmarks/infer_speed.py                     # throughput + memory table (a few minutes on 2 cores)
    python benchmarks/infer_speed.py --big               # also one 512x512x300 volume (memory row)
    python benchmarks/infer_speed.py --skip-throughput --memory-shapes --big --no-small-roi   # that row alone
    python benchmarks/infer_speed.py --device cuda       # windows on the GPU, stitching on the CPU

Throughput: files/s of ``predict_folder`` (prefetching loader thread, Invertd back to the input grid,
atomic NIfTI writes) vs two plain loops over the same files, same checkpoint, windows and device:
(1) bare MONAI: ``LoadImage`` -> window/scale -> ``sliding_window_inference`` -> argmax -> ``nib.save``
(no foreground crop, so it runs more windows on these air-bordered volumes);
(2) the same pipeline as ``predict_folder`` (our transforms with the crop, ``Invertd``, writer) run
sequentially: the difference to it is what the loader thread buys.

Memory: peak resident set size of a fresh process running ``predict_folder`` on one volume, per
volume size, and for small vs large windows (many vs few windows) at one size. It must grow with the
volume (stitched output on the CPU, bounded by a few copies of the volume), not with the window count.
Each volume (at the main roi) is also run by the bare MONAI loop in a fresh process: its seconds,
peak RSS and the ours/bare time ratio are on the same row (``--big`` gives the 512x512x300 one).
A random-weight tiny UNet is used: the network's cost is not what is measured here.

OpenMP: on a small shared machine, libgomp's default active spin-waiting made every torch op in a
single-threaded loop ~4x slower here, until a second thread ran torch work (libgomp then throttles
its spinning). That would flatter ``predict_folder`` (its loader thread) against the plain loops, so
this script sets ``OMP_WAIT_POLICY=PASSIVE`` (before torch is imported) unless ``--omp-active``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ["background", "organ", "lesion"]


def make_checkpoint(path: Path, roi: int, sw_batch_size: int = 4) -> Path:
    import torch

    from medseg_dfl.config import config_from_dict, config_to_dict
    from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
    from medseg_dfl.networks import build_network

    cfg = config_from_dict(
        {
            "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": CLASSES},
            "transforms": {"patch_size": [roi] * 3, "window": [-200.0, 300.0]},
            "network": {"name": "UNet", "kwargs": {"channels": [8, 16], "strides": [2], "num_res_units": 1}},
            "inference": {"sw_batch_size": sw_batch_size, "overlap": 0.25, "blend_mode": "gaussian"},
        }
    )
    torch.manual_seed(0)
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(
        format_version=1,
        model_state=build_network(cfg).state_dict(),
        config=config_to_dict(cfg),
        class_names=CLASSES,
    )
    return save_checkpoint(path, payload)


def write_volumes(folder: Path, count: int, shape: tuple[int, int, int]) -> list[Path]:
    import nibabel as nib

    from medseg_dfl.data.synthetic_volume import make_volume

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        image, _, affine = make_volume(shape, seed)
        paths.append(folder / f"vol_{seed:03d}.nii.gz")
        nib.save(nib.Nifti1Image(image, affine), paths[-1])
    return paths


def bare_monai_loop(checkpoint: Path, files: list[Path], out_dir: Path, device: str) -> None:
    """The baseline: what a user would write with MONAI alone, one file after the other."""
    import nibabel as nib
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, ScaleIntensityRange

    from medseg_dfl.config import config_from_dict
    from medseg_dfl.engine.checkpoint import load_checkpoint
    from medseg_dfl.networks import build_network

    payload = load_checkpoint(checkpoint)
    cfg = config_from_dict(payload["config"])
    net = build_network(cfg)
    net.load_state_dict(payload["model_state"])
    net = net.to(device).eval()
    low, high = cfg.transforms.window
    load = Compose([LoadImage(image_only=True), EnsureChannelFirst(), ScaleIntensityRange(low, high, 0.0, 1.0, clip=True)])
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        image = load(str(path))
        with torch.no_grad():
            logits = sliding_window_inference(
                image[None].as_tensor(), cfg.transforms.patch_size, cfg.inference.sw_batch_size, net,
                overlap=cfg.inference.overlap, mode="gaussian", sw_device=device, device="cpu",
            )  # fmt: skip
        mask = logits[0].argmax(0).numpy().astype(np.uint8)
        reference = nib.load(path)
        nib.save(nib.Nifti1Image(mask, reference.affine, reference.header), out_dir / path.name)


def same_pipeline_loop(checkpoint: Path, files: list[Path], out_dir: Path, device: str) -> None:
    """The fair baseline: our transforms, windows and Invertd, written as a plain sequential loop."""
    import torch
    from monai.inferers import sliding_window_inference

    from medseg_dfl.config import config_from_dict
    from medseg_dfl.engine.checkpoint import load_checkpoint
    from medseg_dfl.io.writers import write_mask_like
    from medseg_dfl.networks import build_network
    from medseg_dfl.transforms import build_inference_transforms, build_inverse_postprocess

    payload = load_checkpoint(checkpoint)
    cfg = config_from_dict(payload["config"])
    net = build_network(cfg)
    net.load_state_dict(payload["model_state"])
    net = net.to(device).eval()
    transforms = build_inference_transforms(cfg, payload["fingerprint"])
    inverse = build_inverse_postprocess(cfg, transforms, argmax=True)
    for path in files:
        data = transforms({"image": str(path)})
        with torch.no_grad():
            logits = sliding_window_inference(
                data["image"][None].as_tensor(), cfg.transforms.patch_size, cfg.inference.sw_batch_size, net,
                overlap=cfg.inference.overlap, mode="gaussian", sw_device=device, device="cpu",
            )  # fmt: skip
        mask = inverse({"image": data["image"], "pred": torch.softmax(logits[0], 0)})["pred"]
        write_mask_like(np.asarray(mask[0]), path, out_dir / path.name)


def throughput(work: Path, count: int, shape: tuple[int, int, int], roi: int, device: str) -> None:
    from medseg_dfl.engine.inference import InferenceOptions, predict_folder

    files = write_volumes(work / "volumes", count, shape)
    ckpt = make_checkpoint(work / "speed.pt", roi)
    # Warm-up (imports, allocator, thread pools) on one file for both, outside the timings.
    bare_monai_loop(ckpt, files[:1], work / "warm_bare", device)
    predict_folder(ckpt, files[0], work / "warm_ours", InferenceOptions(device=device))
    loops = {
        "bare MONAI loop (no crop/invert)": lambda out: bare_monai_loop(ckpt, files, out, device),
        "same pipeline, sequential": lambda out: same_pipeline_loop(ckpt, files, out, device),
        "predict_folder": lambda out: predict_folder(ckpt, work / "volumes", out, InferenceOptions(device=device)),
    }
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(3):  # interleaved, best of three (the machine is shared)
        for index, (name, run) in enumerate(loops.items()):
            start = time.perf_counter()
            run(work / f"out_{index}_{repeat}")
            timings[name].append(time.perf_counter() - start)
    ours = min(timings["predict_folder"])
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"\nthroughput: {count} volumes of {shape}, roi {roi}^3, device {device}, OMP_WAIT_POLICY {policy} (best of 3)")
    for name, values in timings.items():
        best = min(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {name:34s}: {count / best:6.3f} files/s (runs {runs} s)  predict_folder speed-up x{best / ours:.2f}")


def memory_child(work: Path, shape: tuple[int, int, int], roi: int, device: str, bare: bool = False) -> None:
    """Run in a fresh process: one volume of ``shape`` through predict_folder (or the bare MONAI loop)."""
    import nibabel as nib

    from medseg_dfl.engine.inference import InferenceOptions, predict_folder

    rng = np.random.default_rng(0)
    volume = np.full(shape, -1000, dtype=np.int16)
    inner = tuple(slice(n // 8, n - n // 8) for n in shape)
    volume[inner] = rng.integers(-100, 100, size=tuple(s.stop - s.start for s in inner), dtype=np.int16)
    path = work / f"mem_{'x'.join(map(str, shape))}.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    del volume
    ckpt = make_checkpoint(work / f"mem_roi{roi}.pt", roi)
    start = time.perf_counter()
    if bare:
        bare_monai_loop(ckpt, [path], work / f"mem_bare_{roi}", device)
    else:
        summary = predict_folder(ckpt, path, work / f"mem_out_{roi}", InferenceOptions(device=device, overwrite=True))
        assert not summary.failed, summary.failed
    print(f"{time.perf_counter() - start:.1f}")


def peak_rss_mib(work: Path, shape: tuple[int, int, int], roi: int, device: str,
                 bare: bool = False) -> tuple[float, float]:  # fmt: skip
    """(peak RSS MiB, seconds) of a child process running :func:`memory_child`."""
    args = [sys.executable, __file__, "--memory-child", "x".join(map(str, shape)), "--roi", str(roi),
            "--device", device, "--work", str(work)] + (["--bare"] if bare else [])  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    output = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise RuntimeError(f"memory child for {shape} failed (status {status})")
    return usage.ru_maxrss / 1024.0, float(output.strip().splitlines()[-1])


def memory_table(work: Path, shapes: list[tuple[int, int, int]], roi: int, device: str,
                 small_roi: bool = True) -> None:  # fmt: skip
    """Per volume: our peak RSS and time, and (same roi) a bare MONAI ``sliding_window_inference``
    process's time and peak RSS on the same volume and network."""
    print(f"\npeak resident memory of one predict_folder process (roi {roi}^3 unless noted, device {device}, "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')})")  # fmt: skip
    print(f"  {'volume':>16} {'voxels (M)':>11} {'windows':>8} {'peak RSS MiB':>13} {'bytes/voxel':>12} {'seconds':>8}"
          f" {'bare MONAI s':>13} {'bare RSS MiB':>13} {'ours/bare':>10} {'load 1/5 min':>13}")  # fmt: skip
    rows = [(shape, roi) for shape in shapes] + ([(shapes[len(shapes) // 2], roi // 2)] if small_roi else [])
    for shape, r in rows:
        rss, seconds = peak_rss_mib(work, shape, r, device)
        bare = "" if r != roi else "{1:13.1f} {0:13.0f} {2:10.2f}"
        if bare:
            bare_rss, bare_seconds = peak_rss_mib(work, shape, r, device, bare=True)
            bare = " " + bare.format(bare_rss, bare_seconds, seconds / bare_seconds)
        voxels = int(np.prod(shape))
        step = max(1, int(r * 0.75))
        windows = int(np.prod([max(1, -(-(n - r) // step) + 1) for n in shape]))
        label = "x".join(map(str, shape)) + ("" if r == roi else f" roi{r}")
        load = "{:6.2f} {:6.2f}".format(*os.getloadavg()[:2])
        print(f"  {label:>16} {voxels / 1e6:11.2f} {windows:8d} {rss:13.0f} {rss * 2**20 / voxels:12.1f} {seconds:8.1f}"
              f"{bare or ' ' * 39} {load:>13}", flush=True)  # fmt: skip


def parse_shape(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split("x"))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"shape must be XxYxZ, got {text}")
    return values  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--shape", type=parse_shape, default=(128, 128, 48))
    parser.add_argument("--roi", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-shapes", type=parse_shape, nargs="*",
                        default=[(96, 96, 48), (192, 192, 96), (256, 256, 150)])  # fmt: skip
    parser.add_argument("--big", action="store_true", help="add a 512x512x300 volume to the memory table")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--no-small-roi", action="store_true", help="leave out the roi/2 row (many windows)")
    parser.add_argument("--memory-child", type=parse_shape, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--omp-active", action="store_true", help="keep libgomp's default spin-waiting")
    args = parser.parse_args()
    if not args.omp_active:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch is imported later, in the functions
    if args.memory_child:
        memory_child(args.work, args.memory_child, args.roi, args.device, bare=args.bare)
        return
    with tempfile.TemporaryDirectory(prefix="medseg-infer-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            throughput(work, args.files, args.shape, args.roi, args.device)
        shapes = list(args.memory_shapes) + ([(512, 512, 300)] if args.big else [])
        if shapes:
            memory_table(work, shapes, args.roi, args.device, small_roi=not args.no_small_roi)


if __name__ == "__main__":
    main()
