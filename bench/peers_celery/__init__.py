"""The peer of ``bench/peers.py``: FastAPI + Celery + Redis, as the usual tutorials build it."""
