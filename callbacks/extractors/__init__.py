"""The classifier extractor's training command, ``zoo train-extractor`` (also
``python -m genzoo.callbacks.extractors.train``;
it builds datamodules, so it lives beside the callbacks); the extractors themselves are in
:mod:`genzoo.evaluation.extractors`."""
