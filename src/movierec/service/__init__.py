"""The HTTP service: API, web page and profile store. See `create_app` and `serve`."""

from movierec.service.app import build_server, create_app, serve
from movierec.service.settings import Settings

__all__ = ["Settings", "build_server", "create_app", "serve"]
