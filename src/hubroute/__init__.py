"""hubroute: continual model routing over evolving model hubs."""

from hubroute.hub import Experience, ModelCard, Registry, RoutingExample, Stream

__version__ = "0.2.0"

__all__ = ["Experience", "ModelCard", "Registry", "RoutingExample", "Stream", "__version__"]
