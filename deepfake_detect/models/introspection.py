"""Finding layers in any preset: the last convolution (Grad-CAM), nested backbones included."""

from __future__ import annotations

import keras

CONV_LAYERS = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def _last_conv_in(model: keras.Model) -> keras.layers.Layer | None:
    convs = [layer for layer in model.layers if isinstance(layer, CONV_LAYERS)]
    return convs[-1] if convs else None


def last_conv_layer(model: keras.Model) -> tuple[keras.Model, keras.layers.Layer]:
    """``(container, layer)``: the last convolution of ``model`` and the model holding it,
    ``model`` itself or a backbone nested one level deep (EfficientNet, Xception). The last
    one in layer order is the one nearest the head in every preset."""
    for layer in reversed(model.layers):
        if isinstance(layer, CONV_LAYERS):
            return model, layer
        if isinstance(layer, keras.Model):
            found = _last_conv_in(layer)
            if found is not None:
                return layer, found
    raise ValueError(f"model {model.name!r} has no convolution layer: Grad-CAM needs one")
