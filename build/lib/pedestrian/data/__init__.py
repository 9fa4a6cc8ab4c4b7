"""Data: the street-scene renderer, its cache, folder datasets, augmentation and the datamodule."""
