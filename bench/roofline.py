"""How far a training case is from what the CPU can do: FLOPs per image against peak FLOP/s.

FLOPs are counted from the model's own layer shapes (a multiply-add is 2 FLOPs): Conv2D
``2 * H_out * W_out * k_h * k_w * C_in/groups * C_out``, DepthwiseConv2D without ``C_out``,
SeparableConv2D as its depthwise plus its pointwise part, Dense ``2 * in * out``. Training costs
3x the forward pass (forward, gradient of the input, gradient of the weights); normalisation,
activations and pooling are left out (memory-bound, a few percent of the convolutions).

The peak is ``cores x clock x float32 lanes x 2 (FMA) x FMA units``: 8 lanes with AVX2, 16 with
AVX-512; 2 FMA units per core (Zen, Skylake-SP and later). The clock is the highest of
``cpuinfo_max_freq``, ``/proc/cpuinfo``'s "cpu MHz" or the GHz in the model name. It is the
float32 vector peak: AMX tiles (bfloat16) can go beyond it, so a bf16 run's fraction may exceed 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras

from deepfake_detect.training.hardware import usable_cpus

FMA_UNITS_PER_CORE = 2
COUNTED = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
)


def layer_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs of one image through ``layer`` (0 for layers not counted)."""
    if isinstance(layer, keras.Model):
        return model_flops(layer)
    if not isinstance(layer, COUNTED):
        return 0
    output = layer.output.shape[1:]
    channels_in = layer.input.shape[-1]
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(channels_in) * int(output[-1])
    height, width, channels_out = (int(d) for d in output)
    kh, kw = layer.kernel_size
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2 * height * width * kh * kw * int(channels_in) * layer.depth_multiplier
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = 2 * height * width * kh * kw * int(channels_in) * layer.depth_multiplier
        pointwise = 2 * height * width * int(channels_in) * layer.depth_multiplier * channels_out
        return depthwise + pointwise
    groups = getattr(layer, "groups", 1)
    return 2 * height * width * kh * kw * (int(channels_in) // groups) * channels_out


def model_flops(model: keras.Model) -> int:
    """Forward FLOPs per image, nested models included."""
    return sum(layer_flops(layer) for layer in model.layers)


def training_flops_per_image(model: keras.Model) -> int:
    return 3 * model_flops(model)


def cpu_clock_ghz(cpuinfo: Path = Path("/proc/cpuinfo")) -> float:
    """The highest clock the machine reports (GHz)."""
    candidates = []
    try:
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        candidates.append(int(khz) / 1e6)
    except (OSError, ValueError):
        pass
    try:
        text = cpuinfo.read_text()
        candidates += [float(mhz) / 1000 for mhz in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
        candidates += [float(ghz) for ghz in re.findall(r"model name.*?([\d.]+)\s*GHz", text)]
    except OSError:
        pass
    return max(candidates, default=2.0)


def cpu_peak(flags: frozenset[str], cores: int | None = None, ghz: float | None = None) -> dict:
    """The float32 vector peak and how it was derived."""
    cores = cores or usable_cpus()
    ghz = ghz or cpu_clock_ghz()
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else 4
    flops = cores * ghz * 1e9 * lanes * 2 * FMA_UNITS_PER_CORE
    return {"cores": cores, "ghz": round(ghz, 3), "fp32_lanes": lanes, "peak_gflops": flops / 1e9}


def roofline(model: keras.Model, images_per_s: float, peak: dict) -> dict:
    """The model's training FLOPs per image, the peak's images/s bound and our fraction of it."""
    per_image = training_flops_per_image(model)
    bound = peak["peak_gflops"] * 1e9 / per_image
    return {
        "training_gflop_per_image": per_image / 1e9,
        "roofline_images_per_s": bound,
        "images_per_s": images_per_s,
        "roofline_fraction": images_per_s / bound,
    }
