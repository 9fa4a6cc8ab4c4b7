"""pedestrian: the FSDL lecture "Troubleshooting Deep Neural Networks", runnable end to end."""

__version__ = "0.1.0"
