"""Catalog models: names for the GGUF files InstructZero can use, pulled once into a local folder.

``resolve(spec)`` is the one call the rest of the engine needs: a catalog name becomes the local file's path and
anything else (a folder, a ``.gguf`` path, a Hugging Face id) is returned unchanged. Downloads live in the
submodule: ``from engine.models.pull import pull, remove, verify`` (not re-exported here, so that
``engine.models.pull`` stays the module and is not shadowed by the function of the same name).

Light on purpose (stdlib; httpx only once a download starts): the TUI imports this to show what is installed.
"""

from engine.models.catalog import (
    BUNDLED_DEFAULT,
    CATALOG,
    DEFAULT_BLACKBOX,
    DEFAULT_GENERATOR,
    ModelEntry,
    ModelError,
    RegistryPart,
    default_model_path,
    effective_default,
    get,
    is_catalog_name,
    local_path,
    model_path,
    resolve,
    status,
)

__all__ = [
    "BUNDLED_DEFAULT", "CATALOG", "DEFAULT_BLACKBOX", "DEFAULT_GENERATOR", "ModelEntry", "ModelError",
    "RegistryPart", "default_model_path", "effective_default", "get", "is_catalog_name", "local_path",
    "model_path", "resolve", "status",
]
