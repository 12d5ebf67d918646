"""Every explanation method, written once over the model interface (``attention_cores``, ``relprop``,
``blocks``, ``token_map``), batched."""
from .common import pixel_maps
from .registry import (ALIASES, METHOD_NAMES, METHODS, Explainer, add_method_arguments, explain, method_options,
                       resolve, resolve_many, supported_methods)

__all__ = ["ALIASES", "METHOD_NAMES", "METHODS", "Explainer", "add_method_arguments", "explain", "method_options",
           "pixel_maps", "resolve", "resolve_many", "supported_methods"]
