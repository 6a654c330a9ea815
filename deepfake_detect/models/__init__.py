"""Keras model builders, each selected by a `conf/model/*.yaml` `_target_`."""
