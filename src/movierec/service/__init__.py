"""The HTTP service: API, web page and profile store.

``movierec serve --model-dir DIR`` calls `serve`, which loads the artifact (a missing or corrupt
folder raises `DataError` before anything listens), opens the store and runs uvicorn. The app comes
from `create_app(settings)`; its lifespan loads the model once. Configuration (`Settings.from_env`):
``MOVIEREC_DATABASE_URL`` (any SQLAlchemy URL; default SQLite in WAL mode at
``$MOVIEREC_DATA/service.sqlite3``), ``MOVIEREC_ADMIN_TOKEN`` (unset: admin endpoints answer 403),
the rate limits and CORS origins (see `Settings`; `security` and `metrics` hold the request layers).

Endpoints (schema at ``/openapi.json``; ``/docs`` fetches Swagger UI from its CDN, the web page at
``/`` needs no network; every error is JSON ``{"error", "message"}``)::

    GET    /api/health                               liveness, model name
    GET    /api/model                                dataset, model, params, metrics, trained when
    GET    /api/movies?q=&limit=                     title search (typo-tolerant); no q: most rated
    GET    /api/movies/{id}                          one movie, its rating count and mean
    GET    /api/movies/{id}/similar?k=               most similar movies
    GET    /api/users?limit=                         training users (count, first ids)
    GET    /api/users/{id}?limit=                    a training user's ratings
    GET    /api/users/{id}/recommendations?k=&genres=&years=&explain=
    POST   /api/profiles                             new profile -> id and secret token (shown once)
    GET    /api/profiles/{id}                        its ratings and genre profile      (token)
    DELETE /api/profiles/{id}                        delete it and its ratings          (token)
    PUT    /api/profiles/{id}/ratings/{movie}        {"rating": x}, add or change       (token)
    DELETE /api/profiles/{id}/ratings/{movie}                                           (token)
    GET    /api/profiles/{id}/recommendations?k=&genres=&years=&explain=  fold-in      (token)
    POST   /api/admin/retrain                        {"params": {...}} -> job (202)     (admin)
    GET    /api/admin/jobs, /api/admin/jobs/{job}    retrain progress                   (admin)
    POST   /api/admin/reload                         {"model_dir": ...} or the start-up folder (admin)
    GET    /metrics                                  Prometheus metrics (every worker of this serve)
    GET    /                                         the web page (static/, no external assets)

Profile token: ``Authorization: Bearer <token>``; admin token: ``X-Admin-Token: <token>``.
"""

from movierec.service.app import build_server, create_app, serve
from movierec.service.settings import Settings

__all__ = ["Settings", "build_server", "create_app", "serve"]
