from .iresnet import IResNet, get_model

__all__ = ["IResNet", "get_model"]
