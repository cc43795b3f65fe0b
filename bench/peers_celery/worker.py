"""The module ``celery -A peers_celery.worker:celery_app worker`` loads.

Celery's command line needs the app as a module attribute; building it only reads the
environment (Celery connects to Redis when the worker starts, not here).
"""

from peers_celery.app import make_celery

celery_app = make_celery()
