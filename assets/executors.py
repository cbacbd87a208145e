"""Which executor runs the study pipeline's step: in the run worker (default), or on Celery
workers over RabbitMQ when the code location starts with AXIOM_EXECUTOR=celery.

A run of study_pipeline_job is one step (a multi_asset doing one whole batch), so Celery
scales out across batches: the run worker submits the batch's step to the queue and waits,
and each Celery worker takes one batch at a time (prefetch 1, acknowledged when done, so a
batch whose worker dies is redelivered; re-running a batch is idempotent). Inside a worker
the batch still uses the pipeline's process pool (pipeline.workers). Celery workers read the
same settings through deploy/celery/dagster_celery_config.py.

The worker's pool is one thread, not `solo`: with `solo` the step runs inside the event
loop's read callback, and kombu's loop (5.7) could then leave the finished step's
acknowledgement queued behind a poll of up to 10 s; with prefetch 1 RabbitMQ sends the next
batch only after that acknowledgement, so the worker sat idle for up to 10 s between batches
(measured: 5.7-10 s on about every other batch). In a pool thread the step acknowledges from
outside the loop, which wakes it at once.
"""
import os

from dagster_celery import celery_executor

CELERY_SETTINGS = {
    "broker_url": os.environ.get("AXIOM_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    # rpc://: results travel back over RabbitMQ to the run worker that waits for them.
    "result_backend": os.environ.get("AXIOM_CELERY_BACKEND", "rpc://"),
    "task_default_queue": "dagster",
    # One batch per worker at a time, in one pool thread (see above), acknowledged after it
    # finished.
    "worker_pool": "threads",
    "worker_concurrency": 1,
    "worker_prefetch_multiplier": 1,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "broker_connection_retry_on_startup": True,
}


def pipeline_executor():
    """The executor for study_pipeline_job: Celery if AXIOM_EXECUTOR=celery, else Dagster's default."""
    choice = os.environ.get("AXIOM_EXECUTOR", "").lower()
    if choice in ("", "default", "multiprocess"):
        return None
    if choice != "celery":
        raise ValueError(f"AXIOM_EXECUTOR must be 'celery' or unset, not {choice!r}")
    return celery_executor.configured(
        {
            "broker": CELERY_SETTINGS["broker_url"],
            "backend": CELERY_SETTINGS["result_backend"],
            "config_source": {k: v for k, v in CELERY_SETTINGS.items() if k not in ("broker_url", "result_backend")},
        },
        name="celery",
    )
