"""``gastrorad serve``: locked model bundles behind a web page and a REST API.

- :mod:`.settings`  where state lives, limits, database URL
- :mod:`.store`     jobs, results, tokens and the audit log (SQLAlchemy; SQLite by default)
- :mod:`.security`  API tokens, upload limit, security headers
- :mod:`.archive`   zip extraction that refuses zip slip and zip bombs
- :mod:`.registry`  the served bundles and their model cards
- :mod:`.calculator` the nomogram calculator (clinical values only)
- :mod:`.jobs`      image and batch jobs in a bounded worker pool, run by ``predict_patients``
- :mod:`.figures`   the nomogram with a patient's points and the one-page summary PNG
- :mod:`.api`       the FastAPI application (REST API, OpenAPI schema, the page)
"""

from gastrorad.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(bundles, settings: ServeSettings | None = None):
    """The ASGI application serving ``bundles`` (see :func:`gastrorad.serve.api.create_app`)."""
    from gastrorad.serve.api import create_app as _create
    return _create(bundles, settings)
