"""The bench's roofline: FLOPs counted from layer shapes, and the CPU's float32 peak."""

from __future__ import annotations

import keras
import pytest

from bench.roofline import cpu_peak, model_flops, roofline, training_flops_per_image
from deepfake_detect.models.cnn import build_cnn_baseline


def test_flops_are_counted_from_layer_shapes_by_hand():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)  # 8x8x4 out: 2*8*8*3*3*3*4 = 13,824
    x = keras.layers.SeparableConv2D(6, 3, padding="same")(x)  # dw 2*8*8*9*4 + pw 2*8*8*4*6
    x = keras.layers.DepthwiseConv2D(3)(x)  # 6x6x6 out: 2*6*6*9*6 = 3,888
    x = keras.layers.MaxPooling2D()(x)  # not counted
    x = keras.layers.Flatten()(x)  # 3*3*6 = 54
    outputs = keras.layers.Dense(2)(x)  # 2*54*2 = 216
    inner = keras.Model(inputs, outputs)
    outer_in = keras.Input((10, 10, 3))
    nested = keras.Model(outer_in, inner(outer_in))  # a nested model counts its layers
    expected = 13_824 + (4_608 + 3_072) + 3_888 + 216
    assert model_flops(inner) == expected
    assert model_flops(nested) == expected
    assert training_flops_per_image(nested) == 3 * expected


def test_cnn_baseline_at_256_px_matches_the_issue_hand_count():
    """Two convolutions, ~111 + ~72 MFLOP forward: about 0.55 GFLOP per training image."""
    flops = model_flops(build_cnn_baseline(256, dropout=0.3))
    assert flops == pytest.approx(111.48e6 + 72.0e6 + 1.97e6, rel=1e-3)
    assert training_flops_per_image(build_cnn_baseline(256, dropout=0.3)) / 1e9 == pytest.approx(
        0.556, abs=0.001
    )


def test_peak_and_fraction():
    avx2 = cpu_peak(frozenset({"avx2", "fma"}), cores=2, ghz=2.45)
    assert avx2["peak_gflops"] == pytest.approx(156.8)  # 2 x 2.45 x 8 lanes x 2 x 2
    assert cpu_peak(frozenset({"avx512f", "avx2", "fma"}), cores=2, ghz=2.45)["fp32_lanes"] == 16
    figure = roofline(build_cnn_baseline(256, dropout=0.3), 100.0, avx2)
    assert figure["roofline_images_per_s"] == pytest.approx(156.8e9 / (3 * 185.45e6), rel=1e-3)
    assert figure["roofline_fraction"] == pytest.approx(100.0 / figure["roofline_images_per_s"])
