"""dmfr: demodalizing face recognition with synthetic samples (the PyTorch side)."""

__version__ = "0.1.0"
