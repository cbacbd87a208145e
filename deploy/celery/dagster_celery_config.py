"""Celery worker settings, found by dagster_celery.app when this folder is on PYTHONPATH:

    PYTHONPATH=deploy/celery:. celery -A dagster_celery.app worker -Q dagster -n batch1@%h

The same settings as the executor of study_pipeline_job (assets/executors.py), including
the pool (one thread) and the concurrency (1): do not override them with --pool solo.
"""
from assets.executors import CELERY_SETTINGS

globals().update(CELERY_SETTINGS)
